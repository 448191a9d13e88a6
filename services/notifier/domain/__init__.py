"""The notifier domain: when a notification may go out, where to, in which language.

Pure rules (no I/O, no clock reads). Each notification is a `Delivery` aggregate
(`delivery.py`) stored with a timer; when the timer fires the service layer asks it
`when_due` (quiet hours, daily cap, expiry), picks the channel with `channel_plan` and the
language with `language_order`, claims the attempt (`start_attempt`), sends outside the
transaction and records the outcome (`record_sent`, `record_failure`: retry with backoff, next
channel or give up).

Where the SPEC is silent, the domain decides (docs/decisions-notifier.md has the whole list):
- Quiet hours and the daily cap apply to non-urgent messages only; urgent ones go at once and
  do not count.
- A non-urgent message over the daily cap is deferred to the next local day's opening (the end
  of its quiet hours), never dropped, unless it would then miss its `deadline` parameter.
- A message counts against the cap of the local day it first went to a gateway; its retries do
  not count again, and a message that finally failed frees its slot.
- Transient failures are retried after 1, 4, 16 minutes, then hourly (the policy's first and
  longest delay), up to retry_max_attempts attempts in all; a permanent refusal moves on to
  the next channel at once.
"""
