"""A buyer's compensation budget (SPEC 5): coupons granted within a rolling window are capped.

Every coupon granted to the buyer counts, by the instant it was granted, for
`compensation_window_days` (30): one granted at T counts at every instant before
T + 30 days and no longer from then on (also at an instant before T: see `used`). A new
coupon is granted at once when what counts plus its value is at most `compensation_budget`
(10000); above that it waits for a supervisor.
Amounts of different currencies are never added up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.clock import require_aware
from shared.documents import DocumentType, Stored
from shared.policy import ComplaintsPolicy


@dataclass(frozen=True)
class Grant:
    complaint_id: str
    value: int
    currency: str
    granted_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.granted_at, "granted_at")


@dataclass
class CompensationBudget(Stored):
    customer_id: str
    grants: list[Grant] = field(default_factory=list)

    @staticmethod
    def window(policy: ComplaintsPolicy) -> timedelta:
        return timedelta(days=policy.compensation_window_days)

    def used(self, currency: str, now: datetime, policy: ComplaintsPolicy) -> int:
        """What was granted to the buyer in `currency` within the window that ends at `now`.

        A grant dated after `now` counts too: it was made, by a transaction that read its clock
        after this one did (each reads it before waiting for the buyer's lock, and a buyer's
        complaints may be on other partitions or instances).
        """
        require_aware(now, "now")
        start = now - self.window(policy)
        return sum(g.value for g in self.grants if g.currency == currency and start < g.granted_at)

    def fits(self, value: int, currency: str, now: datetime, policy: ComplaintsPolicy) -> bool:
        return self.used(currency, now, policy) + value <= policy.compensation_budget

    def has(self, complaint_id: str) -> bool:
        return any(g.complaint_id == complaint_id for g in self.grants)

    def record(
        self,
        complaint_id: str,
        value: int,
        currency: str,
        granted_at: datetime,
        policy: ComplaintsPolicy,
    ) -> bool:
        """Count a granted coupon; False (no change) when this complaint's was counted before.

        Grants that no longer count anywhere near `granted_at` are dropped on the way.
        """
        require_aware(granted_at, "granted_at")
        if value < 0:
            raise ValueError("a coupon's value must not be negative")
        if self.has(complaint_id):
            return False
        horizon = granted_at - self.window(policy)
        self.grants = [g for g in self.grants if g.granted_at > horizon]
        self.grants.append(Grant(complaint_id, value, currency, granted_at))
        return True


BUDGET_DOCUMENT = DocumentType("complaints.compensation_budget", CompensationBudget)
