"""`aftersales simulate` on made-up shop histories: the services' own handlers in memory, under
two policies, and the difference they make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aftersales.cli import main
from aftersales.simulation import report
from aftersales.simulation.commands import simulate
from aftersales.simulation.compare import Flip
from aftersales_dev.history import SHANGHAI, Line, generate, write

ORDERS = 240  # every scenario, and no-reason requests on each local day 1..20, twice


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Line]]:
    lines = generate(ORDERS)
    path = tmp_path_factory.mktemp("history") / "events.jsonl"
    write(path, lines)
    return path, lines


def policy(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def local_day(instant: str) -> datetime:
    return datetime.fromisoformat(instant).astimezone(SHANGHAI).date()  # type: ignore[return-value]


def signed_days(lines: list[Line]) -> dict[str, datetime]:
    """Each order's local day of the buyer's signature."""
    return {
        line.event["data"]["order_id"]: local_day(line.event["data"]["signed_at"])
        for line in lines
        if line.event["type"] == "parcel.signed" and line.event["data"]["leg"] == "outbound"
    }


def test_identical_policies_make_no_difference(history, tmp_path: Path) -> None:
    events, _ = history
    same = policy(tmp_path, "same.toml", "[returns]\nno_reason_days = 7\n")
    comparison = simulate(events, same, same)
    assert comparison.empty
    assert comparison.flips == () and comparison.refund_changes == ()
    # Not empty because nothing happened: the history decides, refunds and breaches.
    figures = {(t.section, t.name): t.baseline for t in comparison.totals}
    assert figures[("decisions", "approved (eligible)")] > 0
    assert figures[("decisions", "rejected (window_expired)")] > 0
    assert figures[("refunds by case", "all refunds")] > 0
    assert figures[("sla breaches", "complaint_resolution")] > 0
    assert figures[("callbacks", "callback.sent")] > 0
    assert comparison.section("dead letters") == []  # every event applied by every service


def test_a_longer_no_reason_window_flips_exactly_the_requests_of_days_8_to_15(
    history, tmp_path: Path
) -> None:
    events, lines = history
    signed = signed_days(lines)
    day_of = {}
    for line in lines:
        data = line.event["data"]
        if line.event["type"] == "return.requested" and data["reason"] == "dislike":
            day_of[data["return_id"]] = (
                local_day(data["requested_at"]) - signed[data["order_id"]]
            ).days
    expected = tuple(sorted(f"return {rid}" for rid, day in day_of.items() if 8 <= day <= 15))
    assert len(expected) == 16 and set(day_of.values()) == set(range(1, 21))

    base = policy(tmp_path, "base.toml", "[returns]\nno_reason_days = 7\n")
    candidate = policy(tmp_path, "candidate.toml", "[returns]\nno_reason_days = 15\n")
    comparison = simulate(events, candidate, base)

    assert comparison.flips == (Flip("rejected (window_expired)", "approved (eligible)", expected),)


def test_never_deducting_free_shipping_raises_exactly_the_deducted_refunds_by_the_fee(
    history, tmp_path: Path
) -> None:
    events, lines = history
    fee_of = {
        line.event["data"]["order_id"]: line.event["data"]["standard_shipping_fee"]
        for line in lines
        if line.event["type"] == "order.paid" and line.event["data"]["free_shipping_threshold"]
    }
    # The returns of free-shipped orders that leave less than the threshold kept.
    deducted = sorted(
        f"return {line.event['data']['return_id']}"
        for line in lines
        if line.event["type"] == "return.requested" and line.event["data"]["order_id"] in fee_of
    )
    assert deducted

    base = policy(tmp_path, "base.toml", "")
    candidate = policy(tmp_path, "never.toml", '[returns]\nfree_shipping_deduction = "never"\n')
    comparison = simulate(events, candidate, base)

    assert [change.case for change in comparison.refund_changes] == deducted
    for change in comparison.refund_changes:
        order_id = "O-" + change.case.removeprefix("return R-")
        assert change.baseline is not None and change.candidate is not None
        assert change.delta == fee_of[order_id] == 1000
    assert comparison.flips == ()
    deductions = [t for t in comparison.totals if t.name == "free_shipping_deduction"]
    assert [(t.baseline, t.candidate) for t in deductions] == [(-1000 * len(deducted), 0)]


def test_timers_fire_in_simulated_time_between_the_events(tmp_path: Path) -> None:
    """An order shipped 80 h after payment: under a 72 h rule its late-shipment timer fires
    before the shipment arrives (a refund); under 96 h the shipment cancels it first."""
    lines = [line for line in generate(12) if line.event["data"].get("order_id") == "O-000001"]
    shipped = next(line for line in lines if line.event["type"] == "order.shipped")
    paid_at = datetime.fromisoformat(lines[0].event["data"]["paid_at"])
    late = (paid_at + timedelta(hours=80)).isoformat()
    shipped.event["time"] = shipped.event["data"]["shipped_at"] = late
    lines = [line for line in lines if line.event["type"] in ("order.paid", "order.shipped")]
    events = tmp_path / "late.jsonl"
    write(events, sorted(lines, key=lambda line: line.time))
    base = policy(tmp_path, "base.toml", "[complaints]\nlate_shipment_hours = 72\n")
    patient = policy(tmp_path, "patient.toml", "[complaints]\nlate_shipment_hours = 96\n")

    comparison = simulate(events, patient, base)

    goods = sum(line["paid_amount"] for line in lines[0].event["data"]["lines"])
    [change] = comparison.refund_changes
    assert change.case == "late_shipment O-000001"
    assert change.baseline == min(goods * 5 // 100, 3000)  # 5 %, at most 30.00
    assert change.candidate is None


def test_the_same_inputs_give_the_same_report_byte_for_byte(history, tmp_path: Path) -> None:
    """Two runs of the command, as separate processes with different hash seeds (set and dict
    orders then differ wherever they could leak into a report)."""
    events, _ = history
    candidate = policy(tmp_path, "candidate.toml", "[returns]\nno_reason_days = 10\n")
    outputs = []
    for seed in ("1", "2"):
        report = tmp_path / f"{seed}.html"
        command = ["simulate", "--events", str(events), "--policy", str(candidate)]
        done = subprocess.run(
            [sys.executable, "-m", "aftersales.cli", *command, "--report", str(report)],
            env={**os.environ, "PYTHONHASHSEED": seed, "AFTERSALES_POLICY_FILE": ""},
            capture_output=True,
            check=True,
        )
        outputs.append((done.stdout, report.read_bytes()))
    assert outputs[0] == outputs[1]
    text, page = outputs[0]
    assert b"rejected (window_expired)  approved (eligible)" in text
    assert page.startswith(b"<!DOCTYPE html>") and page.count(b"<svg") >= 3
    assert b"http://" not in page.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")
    assert b"https://" not in page


def test_invalid_events_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = generate(6)
    path = tmp_path / "events.jsonl"
    write(path, lines)
    naive = dict(lines[0].event, id="naive-1", time="2026-03-02T10:00:00")
    wrong_topic = dict(lines[0].event, id="wrong-topic")
    with path.open("a", encoding="utf-8") as out:
        out.write(
            json.dumps(
                {"topic": "orders", "partition": 0, "offset": 99, "key": "x", "event": naive}
            )
            + "\n"
        )
        out.write(
            json.dumps(
                {"topic": "returns", "partition": 0, "offset": 99, "key": "x", "event": wrong_topic}
            )
            + "\n"
        )
        out.write(
            json.dumps(
                {"topic": "orders", "partition": 0, "offset": 100, "key": "x", "value": "{not json"}
            )
            + "\n"
        )
    comparison = simulate(path, policy(tmp_path, "p.toml", ""), None)
    assert dict(comparison.invalid) == {
        "naive_timestamp": 1,
        "unexpected_type": 1,
        "malformed_json": 1,
    }
    assert comparison.events == len(lines)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "events.jsonl:2: not a JSON line"),
        (
            '{"topic": "aftersales.refunds", "event": {}}',
            "events.jsonl:2: topic 'aftersales.refunds' is not an input topic",
        ),
        ('{"topic": "orders"}', "events.jsonl:2: the line has no event"),
        (
            '{"topic": "orders", "partition": "0", "event": {}}',
            "events.jsonl:2: partition must be int or null",
        ),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    path = tmp_path / "events.jsonl"
    first = generate(1)[0]
    path.write_text(
        json.dumps({"topic": first.topic, "key": first.key, "event": first.event})
        + "\n"
        + line
        + "\n",
        encoding="utf-8",
    )
    candidate = policy(tmp_path, "p.toml", "")
    assert main(["simulate", "--events", str(path), "--policy", str(candidate)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_bad_policy_is_one_line_naming_the_file_and_key(
    history, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = history
    bad = policy(tmp_path, "bad.toml", "[returns]\nno_reason_days = 400\n")
    assert main(["simulate", "--events", str(events), "--policy", str(bad)]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert "bad.toml" in err and "no_reason_days" in err


def test_an_answer_dated_at_its_deadline_is_in_time(tmp_path: Path) -> None:
    """The first response comes at 2 h 00 exactly: in time under a 2 h rule (the event goes
    before the deadline's timer), late under a 1 h one."""
    lines = [line for line in generate(6) if line.event["data"].get("order_id") == "O-000004"]
    opened = next(line for line in lines if line.event["type"] == "complaint.opened")
    answered = next(line for line in lines if line.event["type"] == "complaint.responded")
    at = (datetime.fromisoformat(opened.event["time"]) + timedelta(hours=2)).isoformat()
    answered.event["time"] = answered.event["data"]["responded_at"] = at
    events = tmp_path / "complaint.jsonl"
    write(events, sorted(lines, key=lambda line: line.time))
    two = policy(tmp_path, "two.toml", "[complaints]\nfirst_response_hours = 2\n")
    one = policy(tmp_path, "one.toml", "[complaints]\nfirst_response_hours = 1\n")

    comparison = simulate(events, one, two)

    breaches = {t.name: (t.baseline, t.candidate) for t in comparison.section("sla breaches")}
    assert breaches["complaint_first_response"] == (0, 1)


def test_a_complaint_upheld_with_a_refund_replays_to_its_refund_and_notice(
    tmp_path: Path,
) -> None:
    """The ledger's refund.issued goes back to the complaints service, which tells the buyer
    the amount (complaint.compensated): replayed like every other event, not dead-lettered."""
    lines = generate(12)
    complaint = next(line for line in lines if line.event["type"] == "complaint.resolved")
    order_id = complaint.event["data"]["order_id"]
    complaint.event["data"]["remedy"] = "refund"
    lines = [line for line in lines if line.event["data"].get("order_id") == order_id]
    events = tmp_path / "refunded.jsonl"
    write(events, lines)
    same = policy(tmp_path, "same.toml", "")

    comparison = simulate(events, same, same)

    assert comparison.section("dead letters") == []
    refunds = {t.name: t.baseline for t in comparison.section("refunds by case")}
    assert refunds["complaint"] > 0


def test_one_flip_is_one_case_in_the_terminal_and_the_page(history, tmp_path: Path) -> None:
    _, lines = history
    signed = signed_days(lines)
    order_id = next(
        data["order_id"]
        for line in lines
        if line.event["type"] == "return.requested"
        and (data := line.event["data"])["reason"] == "dislike"
        and (local_day(data["requested_at"]) - signed[data["order_id"]]).days == 10
    )
    one = tmp_path / "one.jsonl"
    write(one, [line for line in lines if line.event["data"].get("order_id") == order_id])
    base = policy(tmp_path, "base.toml", "[returns]\nno_reason_days = 7\n")
    candidate = policy(tmp_path, "candidate.toml", "[returns]\nno_reason_days = 15\n")

    comparison = simulate(one, candidate, base)

    assert "\nDecisions that flip: 1 case\n" in report.text(comparison)
    assert "<h2>Decisions that flip (1 case)</h2>" in report.html(comparison)
