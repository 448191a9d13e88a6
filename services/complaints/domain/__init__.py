"""The complaints domain: pure rules, money and the aggregates (no I/O, no clock).

Usage by the service layer, for every input event: load (or create with `new`) the Complaint,
the order's ShopOrder and, only to compensate or review, the buyer's CompensationBudget; call
one method with the policy and `now`; persist what changed and turn the returned events into
messages and timer rows, all in one transaction.

- `Complaint`: acknowledgement, first-response and resolution SLAs, escalation, compensation
  once per complaint (`compensate` once `awaits_compensation` and the order is known), coupon
  review, reopening after a low satisfaction score.
- `ShopOrder`: the order's facts (no personal data) and the once-per-order late-shipment
  penalty, from the ship-by timer, a late shipment or cancellation, or an upheld complaint.
- `CompensationBudget`: a buyer's coupons in the rolling window, capped by the budget.
- `priority_callback`: a low score about a return or late-shipment case, escalated for a
  person to call the buyer back.

docs/decisions-complaints.md records every choice made where the SPEC is silent.
"""
