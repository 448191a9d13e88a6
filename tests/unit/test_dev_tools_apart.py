"""`aftersales dev` and `demo` where the development tools (aftersales_dev) are not installed."""

from __future__ import annotations

import sys

import pytest

from aftersales.cli import main


@pytest.mark.parametrize("command", ["dev", "demo"])
def test_without_the_dev_tools_one_clear_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("aftersales_dev")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aftersales_dev", None)  # as if not installed

    assert main([command]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "development tools (aftersales_dev)" in err[0] and "make install" in err[0]
