"""CSAT, response rate and on-time rate per shop and period (`aftersales report`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from aftersales.cli import _parser
from services.followup.bootstrap import build
from services.followup.report import figures, format_table
from shared.contracts import ids
from shared.db import session_factory
from tests.read_api import read_api_client

T0 = datetime.fromisoformat("2024-05-01T10:00:00+08:00")
H = timedelta(hours=1)


def cb(case_type: str, case_id: str) -> str:
    return ids.callback_id(case_type, case_id)


async def scenario(service) -> None:
    ev = service.ev
    await service.send(
        ev.order_paid("o-a1", "shop-a", "c-1"),
        ev.order_paid("o-a2", "shop-a", "c-2"),
        ev.order_paid("o-b1", "shop-b", "c-3"),
        ev.order_paid("o-a5", "shop-a", "c-5"),
        ev.order_paid("o-b6", "shop-b", "c-6"),
    )
    await service.send(
        ev.refund_issued("r-1", "o-a1", "c-1", T0),
        ev.complaint_opened("k-2", "o-a2", "c-2", T0 - H),
        ev.complaint_resolved("k-2", "o-a2", T0),
        ev.refund_issued("r-4", "o-x", "c-4", T0),  # its order.paid was never seen
        ev.refund_issued("r-6", "o-b6", "c-6", T0),
    )
    assert await service.at(T0 + 24 * H) == 4
    await service.send(
        ev.survey_delivered(cb("return", "r-1"), "c-1", T0 + 24 * H, order_id="o-a1"),
        ev.survey_answered(cb("return", "r-1"), "c-1", 5, T0 + 25 * H),
        # answered before the notifier's status arrived: the answer proves the delivery
        ev.survey_answered(cb("complaint", "k-2"), "c-2", 2, T0 + 25 * H),
        # requested in time, but the notifier gave it up: no callback reached the buyer
        ev.survey_failed(cb("return", "r-4"), "c-4", T0 + 72 * H, order_id="o-x"),
        # r-6's invitation awaits the notifier's status: not due yet
    )
    service.clock.set(T0 + 80 * H)
    await service.send(ev.refund_issued("r-3", "o-b1", "c-3", T0))  # too late: missed
    service.clock.set(T0 + 100 * H)
    await service.send(ev.refund_issued("r-5", "o-a5", "c-5", T0 + 100 * H))  # not due yet


def as_tuple(row):
    return (
        row.shop,
        row.cases_due,
        row.cases_on_time,
        row.callbacks_delivered,
        row.callbacks_undelivered,
        row.answered,
        row.satisfied,
    )


async def test_figures_per_shop(service) -> None:
    await scenario(service)
    rows = await figures(service.engine, service.policy)
    assert [as_tuple(row) for row in rows] == [
        ("shop-a", 2, 2, 2, 0, 2, 1),
        ("shop-b", 1, 0, 0, 0, 0, 0),
        ("unknown", 1, 0, 0, 1, 0, 0),
        ("(all)", 4, 2, 2, 1, 2, 1),
    ]
    shop_a, shop_b, unknown, total = rows
    assert (shop_a.csat, shop_a.response_rate, shop_a.on_time_rate) == (0.5, 1.0, 1.0)
    assert (shop_b.csat, shop_b.response_rate, shop_b.on_time_rate) == (None, None, 0.0)
    assert (unknown.response_rate, unknown.on_time_rate) == (None, 0.0)
    assert total.on_time_rate == 0.5 and total.csat == 0.5 and total.response_rate == 1.0

    table = format_table(rows, since=None, until=None, policy=service.policy)
    lines = table.splitlines()
    assert lines[0] == "follow-up report, period start .. today (Asia/Shanghai)"
    assert lines[1].split()[:3] == ["shop", "due", "on"]
    assert "delivered" in lines[1].split() and "undelivered" in lines[1].split()
    assert lines[3].split() == [
        "shop-a", "2", "2", "100.0%", "2", "0", "2", "100.0%", "1", "50.0%"
    ]  # fmt: skip
    assert lines[4].split() == ["shop-b", "1", "0", "0.0%", "0", "0", "0", "-", "0", "-"]
    assert lines[5].split() == ["unknown", "1", "0", "0.0%", "0", "1", "0", "-", "0", "-"]


async def test_figures_per_period_and_shop(service) -> None:
    await scenario(service)
    # every callback of the scenario was due on 05-02 local, except r-5's (05-06)
    rows = await figures(service.engine, service.policy, until=date(2024, 5, 2))
    assert as_tuple(rows[-1]) == ("(all)", 4, 2, 2, 1, 2, 1)
    rows = await figures(service.engine, service.policy, since=date(2024, 5, 3))
    assert [as_tuple(row) for row in rows] == [
        ("shop-a", 0, 0, 0, 0, 0, 0),
        ("(all)", 0, 0, 0, 0, 0, 0),
    ]
    rows = await figures(service.engine, service.policy, shop="shop-b")
    assert [as_tuple(row) for row in rows] == [("shop-b", 1, 0, 0, 0, 0, 0)]
    rows = await figures(service.engine, service.policy, shop="shop-z")
    assert [as_tuple(row) for row in rows] == [("shop-z", 0, 0, 0, 0, 0, 0)]


def test_the_report_command_line() -> None:
    args = _parser().parse_args(
        ["report", "--since", "2024-05-01", "--until", "2024-05-31", "--shop", "shop-a"]
    )
    assert (args.since, args.until, args.shop) == (date(2024, 5, 1), date(2024, 5, 31), "shop-a")
    args = _parser().parse_args(["report"])
    assert (args.since, args.until, args.shop) == (None, None, None)


async def test_the_read_api_gives_the_report_s_rates_per_week(service) -> None:
    await scenario(service)
    definition = build(service.policy, service.clock)
    client = read_api_client(
        definition, session_factory(service.engine), service.clock, service.policy
    )
    params = {"shop": "shop-a", "period": "week", "since": "2024-04-29", "until": "2024-05-12"}
    kpis = (await client.get("/followup/api/kpis", params=params)).json()
    figures_of = {(f["kpi"], f["period"]): f for f in kpis["figures"]}
    # shop-a: both callbacks due on 05-02 (week 18) sent and answered, one score of 4 or 5.
    csat = figures_of[("csat", "2024-W18")]
    assert (csat["value"], csat["numerator"], csat["denominator"]) == (0.5, 1, 2)
    assert figures_of[("response_rate", "2024-W18")]["value"] == 1.0
    assert figures_of[("callback_on_time_rate", "2024-W18")]["value"] == 1.0
    del params["shop"]
    every_shop = (await client.get("/followup/api/kpis", params=params)).json()
    on_time = {f["period"]: f for f in every_shop["figures"] if f["kpi"] == "callback_on_time_rate"}
    assert (on_time["2024-W18"]["numerator"], on_time["2024-W18"]["denominator"]) == (2, 4)
