"""The difference between two replays of one history: decisions that flip, refunds that change,
and totals side by side (`Comparison`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .history import History
from .replay import Outcome

NO_DECISION = "no decision"


@dataclass(frozen=True)
class Flip:
    """Cases decided `before` under the baseline and `after` under the candidate."""

    before: str
    after: str
    cases: tuple[str, ...]


@dataclass(frozen=True)
class RefundChange:
    refund_id: str
    case: str
    currency: str
    baseline: int | None  # None: not issued under that policy
    candidate: int | None

    @property
    def delta(self) -> int:
        return (self.candidate or 0) - (self.baseline or 0)


@dataclass(frozen=True)
class Total:
    """One figure under both policies; `currency` is "" for counts."""

    section: str
    name: str
    currency: str
    baseline: int
    candidate: int

    @property
    def delta(self) -> int:
        return self.candidate - self.baseline


@dataclass(frozen=True)
class Comparison:
    events: int
    invalid: tuple[tuple[str, int], ...]  # reason, count
    start: datetime | None
    end: datetime | None
    digest: str
    baseline_name: str
    candidate_name: str
    flips: tuple[Flip, ...]
    refund_changes: tuple[RefundChange, ...]
    totals: tuple[Total, ...]
    pending_timers: tuple[int, int]

    @property
    def empty(self) -> bool:
        """Nothing differs: no flip, no refund changed, every total the same."""
        return (
            not self.flips
            and not self.refund_changes
            and all(total.delta == 0 for total in self.totals)
        )

    def section(self, name: str) -> list[Total]:
        return [total for total in self.totals if total.section == name]


# The sections of the totals, in report order, with their titles.
SECTIONS = {
    "decisions": "Decisions",
    "refunds by kind": "Refunds by kind",
    "refunds by case": "Refunds by case type",
    "compensation": "Compensation",
    "sla breaches": "SLA breaches",
    "callbacks": "Callbacks",
    "reshipments": "Reshipments",
    "dead letters": "Dead letters",
}


def compare(
    history: History,
    baseline: Outcome,
    candidate: Outcome,
    *,
    baseline_name: str,
    candidate_name: str,
) -> Comparison:
    return Comparison(
        events=len(history.events),
        invalid=tuple(sorted(history.invalid.items())),
        start=history.start,
        end=history.end,
        digest=history.digest,
        baseline_name=baseline_name,
        candidate_name=candidate_name,
        flips=_flips(baseline.decisions, candidate.decisions),
        refund_changes=_refund_changes(baseline, candidate),
        totals=tuple(_totals(baseline, candidate)),
        pending_timers=(baseline.pending_timers, candidate.pending_timers),
    )


def _flips(before: dict[str, str], after: dict[str, str]) -> tuple[Flip, ...]:
    moved: dict[tuple[str, str], list[str]] = {}
    for case in sorted(before.keys() | after.keys()):
        was, now = before.get(case, NO_DECISION), after.get(case, NO_DECISION)
        if was != now:
            moved.setdefault((was, now), []).append(case)
    # The largest first; ties in name order, so the report is the same each time.
    ordered = sorted(moved.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple(Flip(was, now, tuple(cases)) for (was, now), cases in ordered)


def _refund_changes(baseline: Outcome, candidate: Outcome) -> tuple[RefundChange, ...]:
    changes = []
    for refund_id in sorted(baseline.refunds.keys() | candidate.refunds.keys()):
        was, now = baseline.refunds.get(refund_id), candidate.refunds.get(refund_id)
        if was == now:
            continue
        either = was or now
        assert either is not None
        changes.append(
            RefundChange(
                refund_id=refund_id,
                case=either.case,
                currency=either.currency,
                baseline=None if was is None else was.amount,
                candidate=None if now is None else now.amount,
            )
        )
    return tuple(sorted(changes, key=lambda change: (change.case, change.refund_id)))


def _figures(outcome: Outcome) -> dict[tuple[str, str, str], int]:
    """(section, name, currency) -> figure, for one replay."""
    figures: Counter[tuple[str, str, str]] = Counter()
    for decision in outcome.decisions.values():
        figures[("decisions", decision, "")] += 1
    for refund in outcome.refunds.values():
        case_type = refund.case.split(" ", 1)[0]
        figures[("refunds by case", case_type, refund.currency)] += refund.amount
        figures[("refunds by case", "all refunds", refund.currency)] += refund.amount
        for kind, amount in refund.breakdown:
            figures[("refunds by kind", kind, refund.currency)] += amount
            if kind == "compensation":  # complaints' and late shipments' money
                figures[("compensation", "refunded (kind compensation)", refund.currency)] += amount
    for value, currency in outcome.coupons.values():
        figures[("compensation", "coupons", currency)] += value
    for sla, n in outcome.breaches.items():
        figures[("sla breaches", sla, "")] += n
    for event_type, n in outcome.callbacks.items():
        figures[("callbacks", event_type, "")] += n
    figures[("reshipments", "reshipment.requested", "")] += len(outcome.reshipments)
    for what, n in outcome.dead_letters.items():
        figures[("dead letters", what, "")] += n
    return dict(figures)


def _totals(baseline: Outcome, candidate: Outcome) -> Iterable[Total]:
    before, after = _figures(baseline), _figures(candidate)
    keys = sorted(
        before.keys() | after.keys(), key=lambda k: (list(SECTIONS).index(k[0]), k[2], k[1])
    )
    for key in keys:
        section, name, currency = key
        yield Total(section, name, currency, before.get(key, 0), after.get(key, 0))
