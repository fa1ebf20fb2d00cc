"""Zendesk's webhook signature: the documented vector, the timestamp window, secret rotation."""

from __future__ import annotations

import pytest

from connectors.ticketing import PushAuth
from connectors.zendesk.push import SIGNATURE, TIMESTAMP, pushed_ticket_ids, sign, verify_push

# Zendesk's webhook documentation ("verifying"): its test signing secret, and a vector computed
# with it and checked against a third-party implementation.
DOC_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
DOC_TIMESTAMP = "2021-03-25T05:09:27Z"
DOC_BODY = b'{"event":"ticket.updated","id":123}'
DOC_SIGNATURE = "S/RDdU2ERmj7LHDDoWJ2onPYH+t7/f2+LTM4dL7UiLM="
DOC_EPOCH = 1616648967.0  # DOC_TIMESTAMP as seconds


def push(signature: str, timestamp: str = DOC_TIMESTAMP, now: float = DOC_EPOCH) -> PushAuth:
    headers = {SIGNATURE.lower(): signature, TIMESTAMP.lower(): timestamp}
    return PushAuth(headers=headers, body=DOC_BODY, now=now, tolerance_seconds=300)


def test_given_the_documented_vector_when_signing_then_the_documented_signature() -> None:
    assert sign(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE


def test_given_a_valid_signature_within_the_window_then_accepted() -> None:
    assert verify_push(push(DOC_SIGNATURE, now=DOC_EPOCH + 299), [DOC_SECRET])
    assert verify_push(push(DOC_SIGNATURE, now=DOC_EPOCH - 299), [DOC_SECRET])


@pytest.mark.parametrize("skew", [301, -301])
def test_given_a_timestamp_outside_the_window_then_refused(skew: int) -> None:
    assert not verify_push(push(DOC_SIGNATURE, now=DOC_EPOCH + skew), [DOC_SECRET])


def test_given_body_then_timestamp_order_then_refused() -> None:
    # An older doc page concatenated body + timestamp; the current scheme must not accept it.
    import base64
    import hashlib
    import hmac

    wrong = base64.b64encode(
        hmac.new(DOC_SECRET.encode(), DOC_BODY + DOC_TIMESTAMP.encode(), hashlib.sha256).digest()
    ).decode()
    assert not verify_push(push(wrong), [DOC_SECRET])


def test_given_the_previous_secret_then_accepted_during_rotation() -> None:
    assert verify_push(push(DOC_SIGNATURE), ["new-secret", DOC_SECRET])
    assert not verify_push(push(DOC_SIGNATURE), ["new-secret"])


@pytest.mark.parametrize(
    "headers",
    [{}, {SIGNATURE.lower(): DOC_SIGNATURE}, {TIMESTAMP.lower(): DOC_TIMESTAMP}],
)
def test_given_missing_headers_then_refused(headers: dict[str, str]) -> None:
    auth = PushAuth(headers=headers, body=DOC_BODY, now=DOC_EPOCH, tolerance_seconds=300)
    assert not verify_push(auth, [DOC_SECRET])


def test_given_a_garbled_timestamp_then_refused() -> None:
    assert not verify_push(push(DOC_SIGNATURE, timestamp="yesterday"), [DOC_SECRET])


def test_pushed_ticket_ids_reads_the_trigger_placeholder() -> None:
    assert pushed_ticket_ids({"ticket_id": "42", "tags": "idv_mfa_reset"}) == ["42"]
    assert pushed_ticket_ids({"ticket_id": 7}) == ["7"]
    with pytest.raises(ValueError, match="ticket_id"):
        pushed_ticket_ids({"ticket_id": "../users/1"})
    with pytest.raises(ValueError):
        pushed_ticket_ids({})


def test_an_empty_key_never_authenticates() -> None:
    """An empty signing secret still makes a valid HMAC that anyone can compute: it must not
    count, even if one reaches the check (settings refuse it at start-up)."""
    forged = sign("", DOC_TIMESTAMP, DOC_BODY)
    assert not verify_push(push(forged), [""])
    assert not verify_push(push(forged), ["", DOC_SECRET])
    assert verify_push(push(DOC_SIGNATURE), ["", DOC_SECRET])  # the real key still works
