"""The catch-up rule: when to judge a deadline that had already passed when its event was
processed.

A service that was down, or is working off a backlog, learns of some deadlines only after they
passed (a complaint opened three hours ago, a return requested before a 48-hour wait that is
already over). The event that met the deadline in time (`complaint.responded`, `order.paid`,
`return.inspected`) is then usually right behind in the backlog, on the same or another topic.
Judging at once would fire a penalty or a refusal that the next records contradict, so such a
deadline is judged `CATCH_UP_GRACE` after the moment it was learnt of instead. A deadline
still ahead is judged when it falls due, as always.

The same holds for a timer that fires long after its due time (the service was down across
it, or its scheduler is behind: on a restart the scheduler fires at once, before the consumer
has read the outage's records): one that fires more than `CATCH_UP_GRACE` late (`fired_late`)
is set again for `judge_at(due_at, now)` and judged then, once; the timer set again is judged
when it fires, however late.

Only deadlines that another party's event can meet are judged this way. A deadline the service
meets by its own action (a callback it sends, a refund the ledger issues) is judged at once:
nothing behind in the backlog can change it.

Pure: the instant the event is processed is an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Long enough for a consumer catching up to reach the records behind the one it is on (it reads
# whole batches from every partition it owns), short enough that a real miss is still reported
# within minutes.
CATCH_UP_GRACE = timedelta(minutes=5)


def judge_at(deadline: datetime, now: datetime) -> datetime:
    """When to judge `deadline`, learnt of at `now`: at the deadline itself, or
    `CATCH_UP_GRACE` after `now` when the deadline is not after `now`."""
    if deadline.tzinfo is None or now.tzinfo is None:
        raise ValueError("deadline and now must be timezone-aware")
    return deadline if deadline > now else now + CATCH_UP_GRACE


def fired_late(due_at: datetime, now: datetime) -> bool:
    """Whether a timer due at `due_at` that fires at `now` fired more than `CATCH_UP_GRACE`
    after it: the event that met its deadline may still be in the consumer's backlog, so it is
    set again for `judge_at(due_at, now)` and judged then, once. One that fires within the
    grace is judged at once."""
    if due_at.tzinfo is None or now.tzinfo is None:
        raise ValueError("due_at and now must be timezone-aware")
    return now - due_at > CATCH_UP_GRACE


def deadline_timer(deadline: datetime, now: datetime) -> datetime:
    """When a timer that judges `deadline` is due, learnt of at `now`: a grace after the
    deadline (what is dated in time and still on its way is read first), or a grace after `now`
    when the deadline had passed by then (`judge_at`, with no second grace on top)."""
    return max(deadline, now) + CATCH_UP_GRACE


def set_again_for(deadline: datetime, due_at: datetime, now: datetime) -> datetime | None:
    """For a timer judging `deadline`, due at `due_at` and firing at `now`: when to set it
    again instead of judging now, or None to judge now. One at the deadline itself (set before
    timers waited the grace) moves to a grace after it; one at `deadline_timer`'s instant that
    fired more than a grace late (`fired_late`) waits a grace from now, once: the timer set
    again is at neither instant, so it is judged whenever it fires."""
    if due_at == deadline:
        return judge_at(deadline + CATCH_UP_GRACE, now)
    if due_at == deadline + CATCH_UP_GRACE and fired_late(due_at, now):
        return now + CATCH_UP_GRACE
    return None
