"""The refund ledger (SPEC 4.11): one owner of money out per order, across every service.

Pure rules and the `OrderLedger` aggregate: no I/O, no clock. The service layer loads an
order's ledger, calls `record_paid` (order.paid), `request` (refund.requested), `settle`
(refund.settled) or `fail` (refund.failed) with the instant, stores the ledger and turns the
returned events into messages and timer rows, all in one transaction.

Where the SPEC is silent, the ledger decides (docs/decisions-refunds.md):
- goods (net of the free-shipping deduction and the gift charge) and the outbound fee are
  capped each at what was paid for them; return freight and compensation are not capped;
- money goes to the order's own methods while they have room, by the cumulative largest
  remainder split, and beyond that to the payout method (`[refunds] overflow_method`);
- a refund of 0 is closed (settled) at once: there is nothing to pay out;
- a re-issue keeps the case, goes wholly to the payout method and is due 24 h after it is
  issued; its own failure is the second failure, left for a person.
"""
