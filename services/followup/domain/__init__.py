"""The follow-up domain (SPEC section 6): when a satisfaction callback goes out, which cases it
names, and the buyer's answer. Pure rules and the Callback aggregate: no I/O, no clock.

Usage by the service layer: when a case closes, build a `Case.closed(...)`, load the buyer's
scheduled callbacks and call `close_case`; when a callback's timer fires, `Callback.on_due`;
when the buyer answers, `Callback.answer` (raises `AnswerRejected`). Store the callback and
turn the returned events into messages and timer rows, all in one transaction.

Where the SPEC is silent, the domain decides (see docs/decisions-followup.md):
- Delay and deadline are elapsed hours from the close; quiet hours are local wall-clock time
  in the policy's time zone, start included, end excluded.
- A callback goes out strictly before the deadline; one that cannot is never sent late: its
  cases are reported with `sla.breached` (sla `callback`) instead.
- Coalescing: a buyer's scheduled callback takes a newly closed case when one send instant
  suits every case (not before any case's close + delay, before every case's deadline); the
  callback then moves to the later of the two instants and keeps the earliest deadline.
- A survey can be answered for 7 days after it was sent, once.
"""
