"""Notification templates: files under `templates/`, rendered with Jinja2's sandbox.

A template is one file per language, `templates/<name>.<language>.txt` (`return.rejected.zh-CN.txt`,
`return.rejected.en.txt`). Its first non-empty line is the title (e-mail subject, IM title), the
rest the body. Rendering uses `SandboxedEnvironment` (a template cannot reach Python internals)
and `StrictUndefined` (a missing parameter is an error, never an empty hole in a message).

Filters, per language: `money(currency)` for integer minor units, `local_time` and `local_date`
for RFC 3339 timestamps (shown in the shop's time zone).

Templates never see the buyer's contact data, only the request's parameters, so a rendered
message holds no personal data that the request did not carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, Undefined
from jinja2.sandbox import SandboxedEnvironment

from services.notifier.domain.routing import EN, LANGUAGES, ZH_CN
from shared.contracts.primitives import parse_timestamp
from shared.money import format_money, is_known_currency
from shared.refusal import Refusal

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SUFFIX = ".txt"

# Lower-case words joined by dots ("complaint.acknowledged"): no path can hide in a name.
_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


class TemplateProblem(Refusal):
    """A template that does not exist or does not render with the given parameters.

    `reason` is `unknown_template` or `template_error`; `detail` names the template, the
    language and the parameter, never a parameter's value.
    """


class ParamError(ValueError):
    """A parameter of the wrong kind for a filter (e.g. `local_time` of a non-timestamp)."""


@dataclass(frozen=True)
class Rendered:
    template: str
    language: str
    subject: str
    body: str

    @property
    def text(self) -> str:
        """Title and body in one, for channels without a subject (the log line)."""
        return f"{self.subject}\n{self.body}" if self.body != self.subject else self.body


# --- filters ------------------------------------------------------------------------------


def _defined(value: object) -> object:
    """A missing parameter handed to a filter fails as missing, not as the wrong type."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _money(value: object, currency: object, language: str) -> str:
    value, currency = _defined(value), _defined(currency)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError("money: the amount must be an integer number of minor units")
    if not isinstance(currency, str) or not is_known_currency(currency):
        raise ParamError("money: the currency must be an ISO 4217 code such as CNY")
    return format_money(value, currency, "zh-CN" if language == ZH_CN else "en")


def _instant(value: object, zone: ZoneInfo) -> datetime:
    value = _defined(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(zone)
    if isinstance(value, str):
        try:
            return parse_timestamp(value).astimezone(zone)
        except ValueError:  # pydantic's custom error is a ValueError
            pass
    raise ParamError("local_time: expects an RFC 3339 timestamp with an offset")


def _zone_label(zone: ZoneInfo, language: str) -> str:
    if zone.key in ("Asia/Shanghai", "Asia/Chongqing", "PRC"):
        return "北京时间" if language == ZH_CN else "Beijing time"
    return f"{zone.key}当地时间" if language == ZH_CN else f"{zone.key} time"


def _filters(language: str, zone: ZoneInfo) -> dict[str, Callable[..., str]]:
    def money(value: object, currency: object = "CNY") -> str:
        return _money(value, currency, language)

    def local_date(value: object) -> str:
        day = _instant(value, zone).date()
        if language == ZH_CN:
            return f"{day.year}年{day.month}月{day.day}日"
        return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"

    def local_time(value: object) -> str:
        local = _instant(value, zone)
        label = _zone_label(zone, language)
        if language == ZH_CN:
            return f"{local_date(local)} {local:%H:%M}（{label}）"
        return f"{local:%H:%M} on {local_date(local)} ({label})"

    return {"money": money, "local_date": local_date, "local_time": local_time}


# --- the renderer -------------------------------------------------------------------------


class Renderer:
    """Renders the template files of one directory in zh-CN and en."""

    def __init__(self, zone: ZoneInfo | None = None, directory: Path = TEMPLATE_DIR) -> None:
        self.zone = zone or ZoneInfo("Asia/Shanghai")
        self.directory = directory
        loader = FileSystemLoader(str(directory), encoding="utf-8")
        self._environments: dict[str, SandboxedEnvironment] = {}
        for language in LANGUAGES:
            env = SandboxedEnvironment(
                loader=loader,
                undefined=StrictUndefined,
                autoescape=False,  # plain text: SMS, IM, text/plain e-mail
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=False,
            )
            env.filters.update(_filters(language, self.zone))
            self._environments[language] = env

    def names(self) -> list[str]:
        """Every template name with at least one language."""
        found = set()
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name[: -len(SUFFIX)]
            name, _, language = stem.rpartition(".")
            if language in LANGUAGES and _NAME.fullmatch(name):
                found.add(name)
        return sorted(found)

    def languages(self, name: str) -> tuple[str, ...]:
        """The languages `name` exists in (empty when it is unknown or not a valid name)."""
        if not _NAME.fullmatch(name):
            return ()
        return tuple(lang for lang in LANGUAGES if (self.directory / _file(name, lang)).is_file())

    def check(self, name: str, params: Mapping[str, Any]) -> None:
        """Render every language of `name` once; raises TemplateProblem when one fails."""
        for language in self._existing(name):
            self._render(name, language, params)

    def render(self, name: str, params: Mapping[str, Any], languages: tuple[str, ...]) -> Rendered:
        """Render in the first of `languages` the template exists in (zh-CN, en fallback)."""
        existing = self._existing(name)
        language = next((lang for lang in languages if lang in existing), existing[0])
        return self._render(name, language, params)

    def _existing(self, name: str) -> tuple[str, ...]:
        existing = self.languages(name)
        if not existing:
            shown = name if len(name) <= 80 else name[:77] + "..."
            if not _NAME.fullmatch(name):
                raise TemplateProblem(
                    "unknown_template",
                    f"{shown!r} is not a template name (lower-case words joined by dots)",
                )
            raise TemplateProblem(
                "unknown_template",
                f"no template {shown!r}: expected {_file(shown, ZH_CN)} or {_file(shown, EN)} "
                "in the notifier's templates",
            )
        return existing

    def _render(self, name: str, language: str, params: Mapping[str, Any]) -> Rendered:
        env = self._environments[language]
        where = f"template {name!r} ({language})"
        try:
            text = env.get_template(_file(name, language)).render(dict(params))
        except TemplateNotFound:
            raise TemplateProblem("unknown_template", f"{where} cannot be read") from None
        except TemplateError as exc:  # UndefinedError (missing parameter), SecurityError, ...
            raise TemplateProblem("template_error", f"{where}: {_describe(exc)}") from None
        except ParamError as exc:
            raise TemplateProblem("template_error", f"{where}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateProblem(
                "template_error", f"{where}: a parameter has the wrong type ({type(exc).__name__})"
            ) from None
        lines = [line.rstrip() for line in text.strip().splitlines()]
        if not lines:
            raise TemplateProblem("template_error", f"{where} renders to an empty message")
        subject = lines[0].strip()
        body = "\n".join(lines[1:]).strip() or subject
        return Rendered(template=name, language=language, subject=subject, body=body)


def _file(name: str, language: str) -> str:
    return f"{name}.{language}{SUFFIX}"


def _describe(exc: TemplateError) -> str:
    message = exc.message or type(exc).__name__
    match = re.fullmatch(r"'([^']{1,64})' is undefined", message)
    if match:
        return f"parameter {match.group(1)!r} is missing"
    # Other messages can quote template text but not parameter values; keep them short.
    return f"{type(exc).__name__}: {message[:200]}"
