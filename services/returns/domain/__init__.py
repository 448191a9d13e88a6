"""The returns domain: pure rules, money and the ReturnRequest aggregate (no I/O, no clock).

Modules follow SPEC section 4: `eligibility` (4.1-4.4, 4.6), `waiting` (4.5), `money` (4.7),
`shipping` (4.8), `deadlines` (4.9-4.10); `values` holds the value objects, `vocabulary` the
codes, `order_returns` the order with what its returns took back, `model` the aggregate's
entry points and `decisions` its state changes.
docs/rules.md maps every rule to its function and its test.

Usage by the service layer, for every input event: load (or `ReturnRequest.new`) the request
and the order's `OrderLedger`, call one method with the Order (or None), the Policy and `now`,
then persist request + ledger and turn the returned events into messages and timer rows, all
in one transaction. Methods change the request and the ledger passed in.

Where the SPEC is silent, the domain decides:
- Working hours count every day in local wall-clock time; weekends and holidays are not
  modelled (the policy file has no key for them).
- Units are reserved on approval only; an agent's approval re-checks that the units are still
  free (else `quantity_exceeds_purchased`). Exchanges never count units as refunded.
- A failed inspection rejects an approved return whenever it arrives before completion, also
  one approved by an agent; an inspection recorded before approval applies on approval.
- Return-freight insurance covers freight only: it waives the free-shipping deduction, not the
  gift charge. Unreturned gifts are charged on any full return, seller fault included.
- The outbound fee is refunded only by a seller-fault return that completes the order's paid
  lines (earlier no-reason returns count towards "fully returned").
- Deductions apply in a fixed order (free-shipping deduction, then gift charge), each clipped
  at the running total; a once-per-order deduction clipped to zero is not yet "taken".
- A completed refund-kind return always asks the refund ledger for a refund, even of 0 (e.g.
  a gift alone), so the case closes there too. A seller-fault exchange asks for one only when
  return freight is reimbursed. The ledger, not this domain, splits refunds over payments.
- Return freight learnt after completion (return.shipped behind the return-leg signature): a
  seller-fault return reimburses it once, as a supplementary refund of the freight alone.
- Return leg signed, shipped, inspected, evidence or cancelled before return.requested: kept
  on the request and used when it arrives; a review of a case not in review has no effect.
- A cancellation once the return leg is signed has no effect: the merchant has the goods.
- Orders that were cancelled are not treated specially here.
"""
