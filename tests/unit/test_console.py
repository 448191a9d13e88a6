"""The console's configuration, login, CSRF guard, audit lines and charts, over a stand-in for
the services' read APIs (the browser test runs it over the real ones)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from aftersales.console.app import ConsoleConfig, _money, console_app, merge_timelines
from aftersales.console.charts import Point, count_chart, rate_chart
from aftersales.console.server import console_config
from aftersales.console.services import Services, parse_service_urls
from aftersales.registry import SERVICES
from shared.settings import Settings

TOKEN = "unit-test-console-token-42"
KNOWN = list(SERVICES)


def _services_api(replays: list[dict[str, Any]]) -> httpx.MockTransport:
    """What the services answer: one dead letter of refunds; a case on two services."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/refunds/api/dead-letters":
            letter = {
                "service": "refunds",
                "partition": 0,
                "offset": 7,
                "received_at": "2026-03-02T02:00:00Z",
                "reason": "unknown_refund",
                "detail": "refund rf-1 is not one of order O-1's",
                "origin": "aftersales.payouts/0@3",
                "replayable": True,
                "not_replayable_because": None,
            }
            return httpx.Response(
                200,
                json={
                    "service": "refunds",
                    "by_reason": {"unknown_refund": 1},
                    "letters": [letter],
                },
            )
        if path == "/refunds/api/dead-letters/replay":
            replays.append(json.loads(request.content))
            return httpx.Response(200, json={"replayed": True, "message": "published again"})
        if path.endswith("/dead-letters"):
            service = path.split("/")[1]
            return httpx.Response(200, json={"service": service, "by_reason": {}, "letters": []})
        if path == "/returns/api/cases/return/R-1/timeline":
            return httpx.Response(200, json=[_entry("returns", "02:00:05", "return.approved")])
        if path == "/refunds/api/cases/return/R-1/timeline":
            return httpx.Response(200, json=[_entry("refunds", "02:00:07", "refund.issued")])
        if path.endswith("/timeline"):
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"detail": "not found"})

    return httpx.MockTransport(answer)


def _entry(service: str, at: str, name: str) -> dict[str, Any]:
    return {
        "at": f"2026-03-02T{at}+00:00",
        "service": service,
        "kind": "output",
        "name": name,
        "event_id": name,
        "case_type": "return",
        "case_id": "R-1",
        "order_id": "O-1",
        "rule": "eligible" if name == "return.approved" else None,
        "message": "您好" if name == "return.approved" else None,
        "message_en": "Hello" if name == "return.approved" else None,
        "due_at": None,
        "detail": {},
    }


@pytest.fixture
def replays() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def console(replays: list[dict[str, Any]]) -> httpx.AsyncClient:
    upstream = httpx.AsyncClient(transport=_services_api(replays))
    services = Services(dict.fromkeys(KNOWN, "http://services"), client=upstream)
    app = console_app(ConsoleConfig(TOKEN, services))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console")


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    return match[1]


async def _sign_in(console: httpx.AsyncClient) -> str:
    login = await console.get("/login")
    answer = await console.post(
        "/login",
        data={"csrf": _csrf(login), "operator": "sup-01", "token": TOKEN, "next": "/"},
    )
    assert answer.status_code == 303
    return _csrf(await console.get("/"))


# --- configuration -----------------------------------------------------------------------


def test_without_a_token_the_console_refuses_to_start_outside_development_mode() -> None:
    with pytest.raises(ValueError, match=r"^AFTERSALES_CONSOLE_TOKEN is not set"):
        console_config({"AFTERSALES_CONSOLE_SERVICES": "http://x:8000"}, Settings(), KNOWN)
    with pytest.raises(ValueError, match="too short"):
        console_config({"AFTERSALES_CONSOLE_TOKEN": "short"}, Settings(), KNOWN)
    with pytest.raises(ValueError, match=r"^AFTERSALES_CONSOLE_SERVICES is not set"):
        console_config({"AFTERSALES_CONSOLE_TOKEN": TOKEN}, Settings(), KNOWN)


def test_in_development_mode_a_token_is_made_up_and_the_services_are_the_local_process() -> None:
    settings = Settings(aftersales_dev_mode=True, aftersales_http_port=8123)
    config = console_config({}, settings, KNOWN)
    assert len(config.token) >= 16
    assert config.services.urls == dict.fromkeys(KNOWN, "http://127.0.0.1:8123")
    assert console_config({}, settings, KNOWN).token != config.token


def test_service_urls_are_one_for_all_or_one_per_service() -> None:
    assert parse_service_urls("http://all:8000/", KNOWN) == dict.fromkeys(KNOWN, "http://all:8000")
    assert parse_service_urls("refunds=http://r:8000, returns=https://t", KNOWN) == {
        "refunds": "http://r:8000",
        "returns": "https://t",
    }
    with pytest.raises(ValueError, match="'shipping=http://s' is not service=URL"):
        parse_service_urls("shipping=http://s", KNOWN)
    with pytest.raises(ValueError, match="'ftp://r' is not an http"):
        parse_service_urls("refunds=ftp://r", KNOWN)


def test_the_command_says_what_is_missing_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
    run = subprocess.run(
        [sys.executable, "-m", "aftersales.cli", "console"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("aftersales: AFTERSALES_CONSOLE_TOKEN is not set")
    assert run.stderr.count("\n") == 1


def _audit(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aftersales.console.audit"]


# --- login, CSRF, audit ------------------------------------------------------------------


async def test_pages_need_a_login_and_a_wrong_token_is_refused(
    console: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    page = await console.get("/deadlines")
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2Fdeadlines")
    login = await console.get("/login")
    with caplog.at_level(logging.INFO, "aftersales.console.audit"):
        refused = await console.post(
            "/login", data={"csrf": _csrf(login), "operator": "sup-01", "token": "guess"}
        )
    assert refused.status_code == 401
    assert [(r.getMessage(), r.who, r.outcome) for r in _audit(caplog)] == [
        ("login refused", "sup-01", "refused")
    ]
    assert (await console.get("/deadlines")).status_code == 303


async def test_a_post_without_the_session_s_csrf_token_is_refused(
    console: httpx.AsyncClient, replays: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    login_without_csrf = await console.post("/login", data={"operator": "x", "token": TOKEN})
    assert login_without_csrf.status_code == 403
    await _sign_in(console)
    with caplog.at_level(logging.INFO, "aftersales.console.audit"):
        forged = await console.post(
            "/dead-letters/refunds/0/7/replay", data={"csrf": "forged", "confirm": "yes"}
        )
    assert forged.status_code == 403
    assert replays == []
    assert _audit(caplog)[-1].outcome == "csrf_refused"


async def test_a_replay_needs_the_confirmation_and_leaves_an_audit_line(
    console: httpx.AsyncClient, replays: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    csrf = await _sign_in(console)
    detail = await console.get("/dead-letters/refunds/0/7")
    assert "unknown_refund" in detail.text and 'id="confirm"' in detail.text
    unconfirmed = await console.post("/dead-letters/refunds/0/7/replay", data={"csrf": csrf})
    assert unconfirmed.status_code == 400 and replays == []
    caplog.clear()  # the sign-in's own audit line, kept when an earlier test set INFO
    with caplog.at_level(logging.INFO, "aftersales.console.audit"):
        done = await console.post(
            "/dead-letters/refunds/0/7/replay", data={"csrf": csrf, "confirm": "yes"}
        )
    assert done.status_code == 200 and "published again" in done.text
    assert replays == [{"partition": 0, "offset": 7}]
    [line] = _audit(caplog)
    assert (line.who.split(" ")[0], line.action, line.target, line.outcome) == (
        "sup-01",
        "replay dead letter",
        "aftersales.deadletter.refunds/0@7",
        "replayed",
    )
    assert TOKEN not in line.who


async def test_a_case_merges_every_service_s_timeline_in_time_order(
    console: httpx.AsyncClient,
) -> None:
    await _sign_in(console)
    page = await console.get("/cases/return/R-1")
    assert page.status_code == 200
    assert page.text.index("return.approved") < page.text.index("refund.issued")
    assert "您好" in page.text and "Hello" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_merged_timelines_keep_each_service_s_order_within_an_instant() -> None:
    same = "02:00:05"
    merged = merge_timelines(
        {
            "returns": [_entry("returns", same, "return.requested"), _entry("returns", same, "x")],
            "refunds": [_entry("refunds", "02:00:01", "order.paid")],
        }
    )
    assert [e["name"] for e in merged] == ["order.paid", "return.requested", "x"]


# --- charts ------------------------------------------------------------------------------


def test_a_rate_chart_draws_each_period_s_bar_to_scale_with_its_figures() -> None:
    svg = rate_chart("on time", [Point("2026-W10", 0.5, "1/2"), Point("2026-W11", None)])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert heights == [80.0]  # half of the 160 px of 100 %
    assert "50%" in svg and "1/2" in svg and "n/a" in svg
    assert "<script" not in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_a_count_chart_escapes_its_labels() -> None:
    svg = count_chart("reasons", [Point("<b>size_fit</b>", 3), Point("other", 1)])
    assert "&lt;b&gt;size_fit&lt;/b&gt;" in svg and "<b>" not in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', svg)]
    assert widths[0] == pytest.approx(3 * widths[1], abs=2)  # drawn to the pixel


def test_amounts_show_with_their_currency_s_digits() -> None:
    assert (_money(8950, "CNY"), _money(500, "JPY"), _money(12345, "KWD")) == (
        "89.50",
        "500",
        "12.345",
    )
    assert _money(None, "CNY") == ""
