"""The console's pages (Starlette + Jinja2): login, search, case timeline, open deadlines, an
order's refund ledger, dead letters with a guarded replay, KPI charts.

Login is by the token AFTERSALES_CONSOLE_TOKEN; the session is a signed cookie. Every
state-changing action is a POST carrying the session's CSRF token, and leaves an audit log line
(who, what, the outcome; no personal data). Pages show buyers by customer_id only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from shared.money import is_known_currency, major_units, minor_digits

from .charts import Point, count_chart, rate_chart
from .services import Services, ServiceUnavailable

audit = logging.getLogger("aftersales.console.audit")

SESSION_COOKIE = "aftersales_console"
SESSION_HOURS = 12
# Who an operator says they are at login: a staff id (letters, digits, - _ .), never a name.
OPERATOR_MAX = 40

KPI_TITLES = {
    "refund_on_time_by_issue": "Refund on-time rate (by issue)",
    "refund_on_time_by_settlement": "Refund on-time rate (by settlement)",
    "return_review_sla_rate": "Return review SLA rate",
    "first_response_sla_rate": "Complaint first-response SLA rate",
    "resolution_sla_rate": "Complaint resolution SLA rate",
    "csat": "CSAT (scores 4-5 of answered callbacks)",
    "response_rate": "Callback response rate",
    "callback_on_time_rate": "Callbacks on time",
    "return_reasons_by_category": "Top return reasons by category",
    "return_reasons_by_sku": "Top return reasons by SKU",
    "complaint_categories": "Complaint categories",
}


@dataclass(frozen=True)
class ConsoleConfig:
    token: str
    services: Services
    # Cookies only over HTTPS (behind an ingress that terminates TLS); off for plain local HTTP.
    https_only: bool = False

    @property
    def session_secret(self) -> str:
        """Derived from the token: replicas agree, and a new token ends every session."""
        return hmac.new(self.token.encode(), b"aftersales-console-session", "sha256").hexdigest()


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def _operator(text: str) -> str:
    cleaned = "".join(c for c in text.strip() if c.isalnum() or c in "-_.")[:OPERATOR_MAX]
    return cleaned or "operator"


def _when(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def _duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _money(minor: int | None, currency: str | None) -> str:
    """Minor units in major ones, with the currency's own digits (JPY has none)."""
    if minor is None:
        return ""
    if not currency or not is_known_currency(currency):
        return f"{minor} (minor units)"
    return f"{major_units(minor, currency):,.{minor_digits(currency)}f}"


def merge_timelines(by_service: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every service's entries of one case, in time order (a service's own order kept within
    an instant)."""
    entries = [dict(e) for entries in by_service.values() for e in entries]
    for entry in entries:
        entry["at_time"] = _when(entry["at"])
    return sorted(entries, key=lambda e: e["at_time"])


def merge_cases(by_service: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per case, with the services that know it."""
    cases: dict[tuple[str, str], dict[str, Any]] = {}
    for service, found in by_service.items():
        for case in found:
            key = (case["case_type"], case["case_id"])
            row = cases.setdefault(
                key,
                {
                    "case_type": case["case_type"],
                    "case_id": case["case_id"],
                    "order_id": case["order_id"],
                    "customer_id": case["customer_id"],
                    "first_at": _when(case["first_at"]),
                    "last_at": _when(case["last_at"]),
                    "events": 0,
                    "services": [],
                },
            )
            row["services"].append(service)
            row["events"] += case["events"]
            row["order_id"] = row["order_id"] or case["order_id"]
            row["customer_id"] = row["customer_id"] or case["customer_id"]
            row["first_at"] = min(row["first_at"], _when(case["first_at"]))
            row["last_at"] = max(row["last_at"], _when(case["last_at"]))
    return sorted(cases.values(), key=lambda c: (c["first_at"], c["case_type"], c["case_id"]))


def kpi_charts(by_service: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One chart per KPI: a rate per period, or counts per label."""
    figures: dict[str, list[Mapping[str, Any]]] = {}
    for answer in by_service.values():
        for figure in answer["figures"]:
            figures.setdefault(figure["kpi"], []).append(figure)
    charts = []
    for kpi in sorted(figures, key=lambda k: list(KPI_TITLES).index(k) if k in KPI_TITLES else 99):
        rows = figures[kpi]
        title = KPI_TITLES.get(kpi, kpi)
        if all(r["period"] == "all" for r in rows):
            points = [Point(r["label"], r["value"]) for r in rows]
            svg = count_chart(title, points)
        else:
            points = [
                Point(r["period"], r["value"], f"{r['numerator']}/{r['denominator']}")
                for r in sorted(rows, key=lambda r: r["period"])
            ]
            svg = rate_chart(title, points)
        charts.append({"kpi": kpi, "title": title, "svg": svg})
    return charts


Page = Callable[[Request], Awaitable[Response]]


def console_app(config: ConsoleConfig) -> Starlette:
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    templates.env.filters["duration"] = _duration
    templates.env.filters["money"] = _money
    templates.env.filters["when"] = lambda v: v if isinstance(v, datetime) else _when(v)
    services = config.services
    who_token = _fingerprint(config.token)

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return str(token)

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(
            operator=request.session.get("operator"), csrf=csrf_token(request), request=request
        )
        return templates.TemplateResponse(request, name, context, status_code=status)

    def who(request: Request) -> str:
        return f"{request.session.get('operator', '?')} (token {who_token})"

    async def checked_form(request: Request) -> FormData | None:
        """The POSTed form when its CSRF token is the session's; None otherwise."""
        form = await request.form()
        sent = str(form.get("csrf", ""))
        expected = str(request.session.get("csrf", ""))
        if not expected or not hmac.compare_digest(sent, expected):
            return None
        return form

    def signed_in(page: Page) -> Page:
        async def guarded(request: Request) -> Response:
            if not request.session.get("operator"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': target})}", 303)
            return await page(request)

        return guarded

    def forbidden(request: Request, action: str) -> Response:
        audit.warning(
            "refused: bad or missing CSRF token",
            extra={"who": who(request), "action": action, "outcome": "csrf_refused"},
        )
        return PlainTextResponse("the form was stale or forged; reload the page", 403)

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", next=request.query_params.get("next", "/"))

    async def login(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return forbidden(request, "login")
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        operator = _operator(str(form.get("operator", "")))
        if not hmac.compare_digest(str(form.get("token", "")).encode(), config.token.encode()):
            audit.warning(
                "login refused", extra={"who": operator, "action": "login", "outcome": "refused"}
            )
            return render(request, "login.html", 401, next=target, error="wrong token")
        request.session.clear()  # a new session id and CSRF token for the signed-in operator
        request.session["operator"] = operator
        csrf_token(request)
        audit.info("signed in", extra={"who": who(request), "action": "login", "outcome": "ok"})
        return RedirectResponse(target, 303)

    async def logout(request: Request) -> Response:
        if await checked_form(request) is None:
            return forbidden(request, "logout")
        audit.info("signed out", extra={"who": who(request), "action": "logout", "outcome": "ok"})
        request.session.clear()
        return RedirectResponse("/login", 303)

    @signed_in
    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        cases: list[dict[str, Any]] = []
        failed: dict[str, str] = {}
        if q:
            answers = await services.each("/cases", q=q)
            cases, failed = merge_cases(answers.by_service), answers.failed
        return render(request, "search.html", q=q, cases=cases, failed=failed)

    @signed_in
    async def case(request: Request) -> Response:
        case_type, case_id = request.path_params["case_type"], request.path_params["case_id"]
        path = f"/cases/{quote(case_type, safe='')}/{quote(case_id, safe='')}/timeline"
        answers = await services.each(path)
        entries = merge_timelines(answers.by_service)
        order_id = next((e["order_id"] for e in entries if e.get("order_id")), None)
        return render(
            request,
            "case.html",
            case_type=case_type,
            case_id=case_id,
            order_id=order_id,
            entries=entries,
            failed=answers.failed,
        )

    @signed_in
    async def deadlines(request: Request) -> Response:
        answers = await services.each("/deadlines")
        rows = [d for found in answers.by_service.values() for d in found]
        for row in rows:
            row["due_time"] = _when(row["due_at"])
        rows.sort(key=lambda d: d["due_time"])
        return render(request, "deadlines.html", rows=rows, failed=answers.failed)

    @signed_in
    async def ledger(request: Request) -> Response:
        order_id = request.path_params.get("order_id") or request.query_params.get("order", "")
        order_id = order_id.strip()
        found, problem = None, None
        if order_id:
            try:
                found = await services.get("refunds", f"/orders/{quote(order_id, safe='')}/ledger")
            except ServiceUnavailable as exc:
                problem = str(exc)
            if found is None and problem is None:
                problem = f"the refund ledger knows no order {order_id}"
        return render(request, "ledger.html", order_id=order_id, ledger=found, problem=problem)

    @signed_in
    async def dead_letters(request: Request) -> Response:
        reason = request.query_params.get("reason") or None
        answers = await services.each("/dead-letters", reason=reason)
        return render(
            request,
            "dead_letters.html",
            answers=answers.by_service,
            failed=answers.failed,
            reason=reason,
            result=request.query_params.get("result"),
        )

    async def _letter(service: str, partition: int, offset: int) -> Mapping[str, Any] | None:
        found = await services.get(service, "/dead-letters")
        for letter in (found or {}).get("letters", []):
            if (letter["partition"], letter["offset"]) == (partition, offset):
                return dict(letter)
        return None

    def _letter_params(request: Request) -> tuple[str, int, int] | None:
        service = request.path_params["service"]
        if not services.has(service):
            return None
        return service, int(request.path_params["partition"]), int(request.path_params["offset"])

    @signed_in
    async def dead_letter(request: Request) -> Response:
        params = _letter_params(request)
        letter = await _letter(*params) if params else None
        if letter is None:
            return render(request, "message.html", 404, message="no such dead letter")
        return render(request, "dead_letter.html", letter=letter)

    @signed_in
    async def replay(request: Request) -> Response:
        form = await checked_form(request)
        params = _letter_params(request)
        action = "replay dead letter"
        if form is None:
            return forbidden(request, action)
        if params is None:
            return render(request, "message.html", 404, message="no such service")
        service, partition, offset = params
        target = f"aftersales.deadletter.{service}/{partition}@{offset}"
        if form.get("confirm") != "yes":
            return render(
                request, "message.html", 400, message="tick the confirmation to replay it"
            )
        try:
            result = await services.post(
                service, "/dead-letters/replay", {"partition": partition, "offset": offset}
            )
        except ServiceUnavailable as exc:
            result = {"replayed": False, "message": str(exc)}
        result = result or {"replayed": False, "message": "no such dead letter"}
        audit.info(
            "dead letter replay",
            extra={
                "who": who(request),
                "action": action,
                "target": target,
                "outcome": "replayed" if result["replayed"] else "refused",
            },
        )
        return render(request, "replayed.html", service=service, target=target, result=result)

    @signed_in
    async def kpis(request: Request) -> Response:
        period = request.query_params.get("period", "week")
        if period not in ("week", "month"):
            period = "week"
        shop = request.query_params.get("shop", "").strip() or None
        answers = await services.each("/kpis", period=period, shop=shop)
        shown = {name: a for name, a in answers.by_service.items() if a}
        return render(
            request,
            "kpis.html",
            period=period,
            shop=shop or "",
            charts=kpi_charts(shown),
            ranges=sorted({(a["since"], a["until"]) for a in shown.values()}),
            failed=answers.failed,
        )

    async def live(request: Request) -> Response:
        return PlainTextResponse("live")

    async def ready(request: Request) -> Response:
        # Stateless: ready once serving. A service that does not answer is shown on the page.
        return PlainTextResponse("ready")

    routes = [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", search),
        Route("/cases/{case_type}/{case_id}", case),
        Route("/deadlines", deadlines),
        Route("/ledger", ledger),
        Route("/orders/{order_id}/ledger", ledger),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/{service}/{partition:int}/{offset:int}", dead_letter),
        Route(
            "/dead-letters/{service}/{partition:int}/{offset:int}/replay", replay, methods=["POST"]
        ),
        Route("/kpis", kpis),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=config.session_secret,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_HOURS * 3600,
            same_site="strict",
            https_only=config.https_only,
        ),
        Middleware(SecurityHeaders),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class SecurityHeaders:
    """Pages load nothing from elsewhere and are never framed."""

    HEADERS: Iterable[tuple[bytes, bytes]] = (
        (
            b"content-security-policy",
            b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
            b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"x-content-type-options", b"nosniff"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
