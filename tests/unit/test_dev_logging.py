"""`make run`: the terminal tells the demo's story; the services' own logs go to .run/."""

import logging

import pytest

from aftersales_dev.dev import SERVICES_LOG, dev_logging


@pytest.fixture(autouse=True)
def _restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.setLevel(logging.INFO)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def test_the_buyer_messages_and_warnings_on_the_terminal_the_rest_in_the_file(tmp_path, capsys):
    path = dev_logging(tmp_path / ".run")
    assert path == tmp_path / ".run" / SERVICES_LOG
    notifier = logging.getLogger("aftersales.notifier")
    notifier.info("✉ to 138****0000 via log [refund.issued, zh-CN] 退款已发放 | 您好")
    notifier.info("notification deferred until 2026-12-02 09:00 Asia/Shanghai (quiet hours)")
    notifier.info("contact stored", extra={"customer_id": "C-1"})
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")
    logging.getLogger("aftersales.returns.broker").info("Consumer x assigned to partitions")
    logging.getLogger("aftersales.consumer").warning(
        "event dead-lettered", extra={"reason": "malformed_json"}
    )
    for handler in logging.getLogger().handlers:
        handler.flush()

    terminal = capsys.readouterr().err.splitlines()
    assert terminal == [
        "   ✉ to 138****0000 via log [refund.issued, zh-CN] 退款已发放 | 您好",
        "   notification deferred until 2026-12-02 09:00 Asia/Shanghai (quiet hours)",
        "   W aftersales.consumer: event dead-lettered reason=malformed_json",
    ]
    logged = path.read_text(encoding="utf-8")
    for line in ("contact stored customer_id=C-1", "Running upgrade", "assigned to partitions"):
        assert line in logged
    assert "✉ to 138****0000" in logged and "reason=malformed_json" in logged
