"""Log settings: the format in any case, text on a terminal and JSON otherwise, one-line errors."""

import io
import logging

import pytest

from shared.logs import JsonFormatter, TextFormatter, configure_logging, quiet


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def formatter() -> logging.Formatter | None:
    return logging.getLogger().handlers[0].formatter


@pytest.mark.parametrize("given", ["JSON", " json ", "Json"])
def test_the_format_is_accepted_in_any_case(given: str) -> None:
    configure_logging("info", given)
    assert isinstance(formatter(), JsonFormatter)
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize(
    ("stream", "expected"), [(Terminal, TextFormatter), (io.StringIO, JsonFormatter)]
)
def test_unset_it_is_text_on_a_terminal_and_json_otherwise(monkeypatch, stream, expected) -> None:
    monkeypatch.setattr("sys.stderr", stream())
    configure_logging("INFO", None)
    assert isinstance(formatter(), expected)


@pytest.mark.parametrize(
    ("level", "fmt", "variable"),
    [("loud", "json", "AFTERSALES_LOG_LEVEL"), ("INFO", "xml", "AFTERSALES_LOG_FORMAT")],
)
def test_a_bad_value_is_one_line_naming_the_variable(level: str, fmt: str, variable: str) -> None:
    with pytest.raises(ValueError, match=rf"^{variable}: '") as info:
        configure_logging(level, fmt)
    assert "\n" not in str(info.value)


def test_quiet_keeps_only_critical_for_a_while() -> None:
    client = logging.getLogger("aiokafka")
    before = client.level
    with quiet("aiokafka"):
        assert not client.isEnabledFor(logging.ERROR)
    assert client.level == before
