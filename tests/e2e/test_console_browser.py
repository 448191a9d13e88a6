"""The operations console in a real browser (headless Chromium, the system's chromedriver) over
all five services running on the broker and the database.

The demo's return is played through the system; the buyer's refund settlement arrives before
the refund exists, so the refund ledger dead-letters it (`unknown_refund`). In the browser an
operator signs in, finds the buyer's return, reads its timeline in order, sees the KPI charts
with the demo's figures, and replays the dead letter, after which the ledger shows the refund
settled. A failing step leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from aftersales.console.app import ConsoleConfig
from aftersales.console.server import console_server
from aftersales.console.services import Services
from aftersales.http import http_server
from aftersales.registry import SERVICES
from aftersales_dev.demo import CONTENT_TYPE, scenario
from aftersales_dev.events import cloud_event, encode
from shared.clock import SystemClock
from shared.contracts import ids, topics
from shared.policy import Policy
from tests.harness import broker_settings, every_service_running, migrated_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "console-test-token-0123456789"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which("chromium") is None,
    reason="Chromium and chromedriver are not installed (Debian: apt-get install chromium "
    "chromium-driver; `make install` does it as root)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
async def system(database_url: str, kafka_bootstrap: str) -> AsyncIterator[dict[str, Any]]:
    """Every service, its read API on one port, the console on another."""
    async with migrated_database(database_url, "e2e_console", *SERVICES) as url:
        settings = broker_settings(url, kafka_bootstrap, aftersales_dev_mode=True)
        clock, policy = SystemClock(), Policy()
        async with every_service_running(
            settings, clock, policy, timer_poll_interval=0.2
        ) as runtimes:
            api_port, console_port = _free_port(), _free_port()
            api = http_server(runtimes, api_port, policy)
            api_task = asyncio.create_task(api.serve())
            services = Services(dict.fromkeys(SERVICES, f"http://127.0.0.1:{api_port}"))
            console = console_server(ConsoleConfig(TOKEN, services), console_port, host="127.0.0.1")
            console_task = asyncio.create_task(console.serve())
            try:
                yield {
                    "bootstrap": kafka_bootstrap,
                    "api": f"http://127.0.0.1:{api_port}",
                    "console": f"http://127.0.0.1:{console_port}",
                }
            finally:
                console.should_exit = api.should_exit = True
                await asyncio.gather(console_task, api_task)


@pytest.fixture
def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # A click that submits a form returns before the next page is there: look for an element
    # for up to 15 s before calling it missing (a loaded machine is slow to render).
    driver.implicitly_wait(15)
    yield driver
    driver.quit()


async def _play_demo_return(bootstrap: str, run: str) -> None:
    """The demo's return scenario, preceded by the settlement of its refund (too early)."""
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        order, refund = f"O-{run}", ids.refund_id("return", f"R-{run}-1")
        settled = {"refund_id": refund, "order_id": order, "settled_at": now.isoformat()}
        early = cloud_event(
            "refund.settled", settled, now, source="/finance/payouts", id_prefix="settle"
        )
        await producer.send_and_wait(
            topics.PAYOUTS, encode(early), key=order.encode(), headers=CONTENT_TYPE
        )
        for _, topic, key, event in scenario(run, now):
            value = event if isinstance(event, bytes) else encode(event)
            await producer.send_and_wait(topic, value, key=key.encode(), headers=CONTENT_TYPE)
            await asyncio.sleep(0.3)  # orders, signatures and returns are different topics
    finally:
        await producer.stop()


async def test_an_operator_reads_a_case_sees_kpis_and_replays_a_dead_letter(
    system: dict[str, Any], browser: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    order, refund_id = f"O-{run}", ids.refund_id("return", f"R-{run}-1")
    await _play_demo_return(system["bootstrap"], run)

    async with httpx.AsyncClient(base_url=system["api"], timeout=10) as api:

        async def refunded() -> Any:
            answer = await api.get(f"/refunds/api/orders/{order}/ledger")
            return answer.status_code == 200 and answer.json()["refunds"]

        async def letter() -> Any:
            letters = (await api.get("/refunds/api/dead-letters")).json()["letters"]
            return [x for x in letters if refund_id in x["detail"]]

        [refund] = await _until(refunded, "the demo's refund issued")
        await _until(letter, "the early settlement dead-lettered")
    assert refund["on_time"] and refund["settled_at"] is None

    # Selenium blocks: the browser is driven from a thread while this loop serves the pages.
    try:
        await asyncio.to_thread(_operator_session, browser, system["console"], run)
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "console_browser.png"))
        raise


def _operator_session(browser: Any, console: str, run: str) -> None:
    from selenium.webdriver.common.by import By

    order, buyer, returned = f"O-{run}", f"C-{run}", f"R-{run}-1"
    refund_id = ids.refund_id("return", returned)

    def page(path: str) -> None:
        browser.get(console + path)

    def text() -> str:
        return str(browser.find_element(By.TAG_NAME, "body").text)

    # Signed out, every page leads to the login; a wrong token is refused.
    page("/")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "operator").send_keys("sup-01")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "sign-in").click()
    assert browser.find_element(By.ID, "login-error").text == "wrong token"
    browser.find_element(By.ID, "operator").send_keys("sup-01")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()

    # Find the buyer's cases by buyer id; open the refunded return.
    browser.find_element(By.ID, "q").send_keys(buyer)
    browser.find_element(By.ID, "search").click()
    cases = browser.find_element(By.ID, "cases").text
    assert f"return {returned}" in cases and f"return R-{run}-2" in cases
    browser.find_element(By.LINK_TEXT, f"return {returned}").click()

    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tr")[1:]
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    names = [(c[1], c[2], c[3]) for c in cells]
    times = [c[0] for c in cells]
    assert times == sorted(times), "the timeline is in time order"
    expected_order = [
        ("returns", "input", "order.paid"),
        ("returns", "input", "return.requested"),
        ("returns", "output", "return.approved"),
        ("returns", "output", "refund.requested"),
        ("refunds", "input", "refund.requested"),
        ("refunds", "output", "refund.issued"),
    ]
    positions = [names.index(step) for step in expected_order]
    assert positions == sorted(positions), names
    approved = cells[names.index(("returns", "output", "return.approved"))]
    assert approved[4]  # the rule code
    assert len(approved[5].splitlines()) == 2  # the buyer's message in zh-CN and in en
    page_text = text()
    for personal in ("Li", "138", "@example.com"):
        assert personal not in page_text.split(), personal

    # KPIs: the demo's one refund, issued on time; its two returns' reasons by category.
    page("/kpis")
    on_time = browser.find_element(By.ID, "chart-refund_on_time_by_issue").text
    assert "100%" in on_time and "1/1" in on_time
    reasons = browser.find_element(By.ID, "chart-return_reasons_by_category").text
    assert "size_fit / apparel" in reasons and "changed_mind / fresh_perishable" in reasons

    # The dead letter: inspect, confirm, replay; the ledger then shows the refund settled.
    page("/dead-letters?reason=unknown_refund")
    table = browser.find_element(By.ID, "letters-refunds")
    row = next(r for r in table.find_elements(By.TAG_NAME, "tr") if refund_id in r.text)
    row.find_element(By.PARTIAL_LINK_TEXT, "replay").click()
    assert browser.find_element(By.ID, "reason").text == "unknown_refund"
    browser.find_element(By.ID, "confirm").click()
    browser.find_element(By.ID, "replay").click()
    assert "published again" in browser.find_element(By.ID, "replay-result").text

    deadline = time.monotonic() + 30
    while True:
        page(f"/orders/{order}/ledger")
        status = browser.find_element(By.CSS_SELECTOR, "#refunds td.settlement").text
        if status.startswith("settled"):
            break
        assert time.monotonic() < deadline, f"the replayed settlement not applied: {status}"
        time.sleep(0.5)
