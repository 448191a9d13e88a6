"""`aftersales record` and `aftersales simulate` (added to the command by `add_commands`)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, time, timedelta
from pathlib import Path

from shared.policy import Policy, load_policy

from .compare import Comparison, compare
from .history import History, read_history, record
from .replay import Outcome, replay

POLICY_FILE = "AFTERSALES_POLICY_FILE"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rec = sub.add_parser(
        "record",
        help="write the input topics' events (orders, signatures, returns, complaints, surveys, "
        "payouts) to a JSON-lines file, for `simulate`",
    )
    rec.add_argument("--out", type=Path, required=True, help="the file to write (JSON lines)")
    rec.add_argument(
        "--since",
        default=None,
        help="only records the broker stamped from then on: YYYY-MM-DD (local midnight, the "
        "policy's time zone) or an RFC 3339 instant",
    )
    rec.add_argument(
        "--until",
        default=None,
        help="only records stamped before then: YYYY-MM-DD (that local day included) or an "
        "RFC 3339 instant",
    )
    rec.set_defaults(func=_record)

    sim = sub.add_parser(
        "simulate",
        help="replay a recorded history under a candidate policy and report what would change "
        "against the current one",
    )
    sim.add_argument("--events", type=Path, required=True, help="a recording (JSON lines)")
    sim.add_argument("--policy", type=Path, required=True, help="the candidate policy file")
    sim.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help=f"the policy to compare with (default: {POLICY_FILE}, else the defaults)",
    )
    sim.add_argument("--report", type=Path, default=None, help="also write an HTML report here")
    sim.set_defaults(func=_simulate)


def _record(args: argparse.Namespace) -> int:
    from aftersales.registry import environment
    from shared.logs import quiet

    env = environment()
    since = instant(args.since, env.policy, "--since") if args.since else None
    until = instant(args.until, env.policy, "--until", end_of_day=True) if args.until else None
    if since is not None and until is not None and until <= since:
        raise ValueError("--until must come after --since")
    with quiet("aiokafka"):
        asyncio.run(record(env.settings, args.out, since=since, until=until))
    return 0


def instant(text: str, policy: Policy, option: str, *, end_of_day: bool = False) -> datetime:
    """An RFC 3339 instant with its offset, or a local date (the policy's time zone): its
    midnight, or with `end_of_day` the next midnight (the day included)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option}: {text!r} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant"
        ) from None
    if len(text) == 10:  # a date
        day = value.date() + (timedelta(days=1) if end_of_day else timedelta())
        return datetime.combine(day, time(), tzinfo=policy.zone)
    if value.tzinfo is None:
        raise ValueError(f"{option}: {text!r} has no UTC offset (e.g. +08:00 or Z)")
    return value


def _simulate(args: argparse.Namespace) -> int:
    from .report import html, text

    comparison = simulate(args.events, args.policy, args.baseline)
    sys.stdout.write(text(comparison))
    if args.report is not None:
        args.report.write_text(html(comparison), encoding="utf-8")
        print(f"report written to {args.report}", file=sys.stderr)
    return 0


def simulate(events: Path, candidate: Path, baseline: Path | None = None) -> Comparison:
    """Both policies checked first (a bad one is one line), then the history read, then both
    replays, side by side on two processes where the machine has two cores."""
    baseline_file = baseline or _current_policy_file()
    baseline_policy = load_policy(baseline_file)
    candidate_policy = load_policy(candidate)
    history = read_history(events)
    baseline_outcome, candidate_outcome = replay_both(history, baseline_policy, candidate_policy)
    return compare(
        history,
        baseline_outcome,
        candidate_outcome,
        baseline_name=str(baseline_file or "the defaults"),
        candidate_name=str(candidate),
    )


def _current_policy_file() -> Path | None:
    named = os.environ.get(POLICY_FILE)
    return Path(named) if named else None


# The history the replay processes inherit when they are forked (not pickled: it is large).
_FORKED: History | None = None


def _replay_forked(policy: Policy, label: str) -> Outcome:
    assert _FORKED is not None
    return replay(_FORKED, policy, label)


def replay_both(history: History, baseline: Policy, candidate: Policy) -> tuple[Outcome, Outcome]:
    """The two replays, in two forked processes when there are two cores and fork exists;
    else one after the other. Each replay is deterministic, so the result is the same."""
    global _FORKED
    parallel = (os.cpu_count() or 1) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if not parallel or len(history.events) < 1000:
        return replay(history, baseline, "baseline"), replay(history, candidate, "candidate")
    _FORKED = history
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            first = pool.submit(_replay_forked, baseline, "baseline")
            second = pool.submit(_replay_forked, candidate, "candidate")
            return first.result(), second.result()
    finally:
        _FORKED = None
