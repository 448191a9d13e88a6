"""The webhook signature: what the notifier sends and the reference verifier for receivers.

Header `X-Aftersales-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the HMAC-SHA256,
keyed with `AFTERSALES_WEBHOOK_SECRET`, of the ASCII timestamp, a dot and the raw request body
(`t.body`). The timestamp makes a captured request worthless after the tolerance (5 minutes):
a receiver refuses a signature older or further in the future than that. Several `v1=` values
may appear (a secret being rotated); one match is enough.

`verify` is the reference implementation a receiver can copy: pure, no clock read (the instant
is an argument), constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Aftersales-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The request is not signed by a holder of the secret, or the signature is too old."""


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(
        secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp` (unix seconds)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return f"t={timestamp},{SCHEME}={_mac(key, timestamp, body)}"


def verify(
    secret: str | bytes,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check a received `X-Aftersales-Signature` against the raw body; returns its timestamp.

    `now` is the receiver's clock in unix seconds. Raises `InvalidSignature` when the header is
    malformed, no `v1` value matches, or the timestamp is more than `tolerance` seconds away
    from `now` (a replayed request).
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature("malformed signature header: expected t=<seconds>,v1=<hex>")
    expected = _mac(key, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidSignature("signature does not match the body")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(f"signature timestamp is more than {tolerance} s away from now")
    return timestamp
