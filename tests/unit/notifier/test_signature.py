"""The webhook signature and its reference verifier."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.notifier.signature import TOLERANCE_SECONDS, InvalidSignature, sign, verify

SECRET = "whsec-test"
BODY = '{"id":"req-1","text":"您好"}'.encode()
T = 1_714_528_800


def test_the_header_is_an_hmac_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, T)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


def test_a_good_signature_verifies_within_the_tolerance() -> None:
    header = sign(SECRET, BODY, T)
    assert verify(SECRET, header, BODY, now=T) == T
    assert verify(SECRET, header, BODY, now=T + TOLERANCE_SECONDS) == T
    assert verify(SECRET, header, BODY, now=T - 30) == T  # the sender's clock a little ahead


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # the body changed
        lambda h, b: (h.replace(f"t={T}", f"t={T + 1}"), b),  # the timestamp changed
        lambda h, b: (h[:-1] + ("0" if h[-1] != "0" else "1"), b),  # the digest changed
        lambda h, b: (sign("another-secret", b, T), b),  # signed with another secret
    ],
)
def test_a_tampered_request_is_refused(tamper: object) -> None:
    header, body = tamper(sign(SECRET, BODY, T), BODY)  # type: ignore[operator]
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, header, body, now=T)


def test_a_replayed_request_is_refused_once_too_old_or_too_far_ahead() -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(InvalidSignature, match="more than 300 s"):
        verify(SECRET, header, BODY, now=T + TOLERANCE_SECONDS + 1)
    with pytest.raises(InvalidSignature, match="more than 300 s"):
        verify(SECRET, header, BODY, now=T - TOLERANCE_SECONDS - 1)
    assert verify(SECRET, header, BODY, now=T + 3600, tolerance=7200) == T


@pytest.mark.parametrize("header", ["", "sha256=abc", f"t={T}", "v1=abc", "t=soon,v1=abc"])
def test_a_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(InvalidSignature, match="malformed"):
        verify(SECRET, header, BODY, now=T)


def test_any_of_several_signatures_may_match_while_a_secret_is_rotated() -> None:
    old = sign("old-secret", BODY, T).split(",")[1]
    header = f"{sign(SECRET, BODY, T)},{old}"
    assert verify(SECRET, header, BODY, now=T) == T
    assert verify("old-secret", header, BODY, now=T) == T
