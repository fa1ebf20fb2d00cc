"""``POST /webhooks/servicenow`` through Flask's test client, with a real Redis queue behind it."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from redis import Redis

from connectors.push_dedupe import BASIC_WINDOW_SECONDS
from connectors.registry import SETTINGS
from connectors.servicenow.push import SIGNATURE, TIMESTAMP, sign, verify_push
from connectors.ticketing import PushAuth
from tests.conftest import json_body, queued, settings_data
from webhooks.app import create_app
from worker.dispatch import START_VERIFICATION

SECRET = "sn-push-signing-secret"
SYS_ID = "0123456789abcdef0123456789abcdef"
BODY = json.dumps({"table": "incident", "sys_id": SYS_ID, "number": "INC0010001"}).encode()


@pytest.fixture
def client(redis: Redis[str]) -> FlaskClient:
    data = settings_data()
    data["desks"]["acme_sn"] = {
        "kind": "servicenow",
        "base_url": "http://127.0.0.1:9",
        "username": "deskgate",
        "password": "pw",
        "webhook_secret": SECRET,
    }
    return create_app(SETTINGS(**data)).test_client()


def signed(timestamp: float | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {"X-Deskgate-Timestamp": stamp, "X-Deskgate-Signature": sign(secret, stamp, BODY)}


def test_given_a_signed_push_then_the_record_is_queued_for_its_desk(
    client: FlaskClient, redis: Redis[str]
) -> None:
    resp = client.post("/webhooks/servicenow", data=BODY, headers=signed())
    assert resp.status_code == 200 and json_body(resp)["desk"] == "acme_sn"
    assert queued(redis) == [(START_VERIFICATION, ["acme_sn", SYS_ID, "push"])]


def test_given_basic_auth_with_the_secret_then_accepted(
    client: FlaskClient, redis: Redis[str]
) -> None:
    token = base64.b64encode(f"servicenow:{SECRET}".encode()).decode()
    resp = client.post(
        "/webhooks/servicenow", data=BODY, headers={"Authorization": f"Basic {token}"}
    )
    assert resp.status_code == 200
    assert len(queued(redis)) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, signed(secret="guess"), signed(timestamp=time.time() - 900)],
    ids=["unsigned", "wrong-secret", "stale"],
)
def test_given_a_bad_push_then_401_and_nothing_queued(
    client: FlaskClient, redis: Redis[str], headers: dict[str, str]
) -> None:
    assert client.post("/webhooks/servicenow", data=BODY, headers=headers).status_code == 401
    assert queued(redis) == []


def test_a_zendesk_signature_does_not_open_the_servicenow_door(
    client: FlaskClient, redis: Redis[str]
) -> None:
    resp = client.post("/webhooks/zendesk", data=BODY, headers=signed())
    assert resp.status_code == 401
    assert queued(redis) == []


def test_a_replayed_signed_push_is_enqueued_once(client: FlaskClient, redis: Redis[str]) -> None:
    headers = signed()
    answers = [client.post("/webhooks/servicenow", data=BODY, headers=headers) for _ in range(5)]
    assert [json_body(r)["status"] for r in answers] == ["accepted"] + ["duplicate"] * 4
    assert len(queued(redis)) == 1
    # The same record pushed again with a new timestamp (flagged again) is a new delivery.
    later = client.post("/webhooks/servicenow", data=BODY, headers=signed(time.time() + 2))
    assert json_body(later)["status"] == "accepted" and len(queued(redis)) == 2


def test_a_firing_with_a_delivery_id_is_taken_once_whatever_its_timestamp(
    client: FlaskClient, redis: Redis[str]
) -> None:
    """The business rule signs a fresh ``delivery`` id into each firing's body: a replay and a
    re-signed retry are duplicates, two firings within one second are two deliveries."""

    def firing(delivery: str, at: float) -> str:
        body = json.dumps({**json.loads(BODY), "delivery": delivery}).encode()
        stamp = str(int(at))
        resp = client.post(
            "/webhooks/servicenow",
            data=body,
            headers={
                "X-Deskgate-Timestamp": stamp,
                "X-Deskgate-Signature": sign(SECRET, stamp, body),
            },
        )
        assert resp.status_code == 200
        return str(json_body(resp)["status"])

    now = time.time()
    assert firing("a" * 32, now) == "accepted"
    assert firing("a" * 32, now) == "duplicate"  # replayed
    assert firing("a" * 32, now + 3) == "duplicate"  # retried, signed anew
    assert firing("b" * 32, now) == "accepted"  # flagged again, same second
    assert len(queued(redis)) == 2


def test_a_replayed_basic_auth_push_is_enqueued_once_per_short_window(
    client: FlaskClient, redis: Redis[str]
) -> None:
    """Basic auth signs nothing and carries no timestamp: the body is the key, for a short
    window (docs/decisions.md), so a replayer costs at most one task per window."""
    token = base64.b64encode(f"servicenow:{SECRET}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    answers = [client.post("/webhooks/servicenow", data=BODY, headers=auth) for _ in range(5)]
    assert [json_body(r)["status"] for r in answers] == ["accepted"] + ["duplicate"] * 4
    assert len(queued(redis)) == 1
    [key] = redis.keys("dgtest:seen:push:*")
    assert 0 < redis.ttl(key) <= BASIC_WINDOW_SECONDS
    redis.delete(key)  # what the window's end does
    again = client.post("/webhooks/servicenow", data=BODY, headers=auth)
    assert json_body(again)["status"] == "accepted" and len(queued(redis)) == 2


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic eDo=",  # "x:" (the review's example): an empty password
        "Basic " + base64.b64encode(b"servicenow:").decode(),
        "Basic Og==",  # ":"
    ],
)
def test_an_empty_basic_password_never_authenticates(authorization: str) -> None:
    """A blank (previous) secret used to let an empty Basic password through."""
    push = PushAuth(
        headers={"authorization": authorization}, body=BODY, now=time.time(), tolerance_seconds=300
    )
    assert not verify_push(push, [SECRET, ""])
    assert not verify_push(push, [""])


def test_an_empty_signing_key_never_authenticates() -> None:
    stamp = str(int(time.time()))
    headers = {SIGNATURE: sign("", stamp, BODY), TIMESTAMP: stamp}
    push = PushAuth(headers=headers, body=BODY, now=time.time(), tolerance_seconds=300)
    assert not verify_push(push, [SECRET, ""])
    good = {SIGNATURE: sign(SECRET, stamp, BODY), TIMESTAMP: stamp}
    assert verify_push(replace(push, headers=good), [SECRET, ""])
