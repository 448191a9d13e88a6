"""The catch-up rule: when to judge a deadline that had already passed when its event was
processed.

A service that was down, or is working off a backlog, learns of some deadlines only after they
passed (a complaint opened three hours ago, a return requested before a 48-hour wait that is
already over). The event that met the deadline in time (`complaint.responded`, `order.paid`,
`return.inspected`) is then usually right behind in the backlog, on the same or another topic.
Judging at once would fire a penalty or a refusal that the next records contradict, so such a
deadline is judged `CATCH_UP_GRACE` after the moment it was learnt of instead. A deadline
still ahead is judged when it falls due, as always.

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
