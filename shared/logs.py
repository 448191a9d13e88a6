"""Structured JSON logs with personal data masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from shared.crypto import redact

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _RESERVED and not k.startswith("_")
        )
        line = f"{record.levelname[0]} {record.name}: {record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")


def configure_logging(level: str = "INFO", fmt: str | None = "json") -> None:
    """Logs to stderr. `fmt` is `json` or `text` (any case); None: text on a terminal, JSON
    otherwise (a log collector). A bad level or format is a ValueError naming the variable."""
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(
            f"AFTERSALES_LOG_LEVEL: {level.strip()[:40]!r} is not a log level; "
            f"use one of {', '.join(LEVELS)}"
        )
    if fmt is None or not fmt.strip():
        fmt = "text" if sys.stderr.isatty() else "json"
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"AFTERSALES_LOG_FORMAT: {fmt[:40]!r} is not a log format; use json or text"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    for noisy in ("aiokafka", "faststream", "sqlalchemy.engine", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Only CRITICAL from `logger` for a while: while the CLI connects to the broker, whose
    client logs every failed attempt, since the command reports a failure itself in one line."""
    target = logging.getLogger(logger)
    before = target.level
    target.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        target.setLevel(before)
