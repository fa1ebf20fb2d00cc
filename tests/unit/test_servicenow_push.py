"""``POST /webhooks/servicenow`` through Flask's test client, with a real Redis queue behind it."""

from __future__ import annotations

import base64
import json
import time

import pytest
from flask.testing import FlaskClient
from redis import Redis

from config.settings import Settings
from connectors.servicenow import sign
from tests.conftest import queued, settings_data
from webhooks.app import create_app
from worker.dispatch import START_VERIFICATION

SECRET = "sn-push-secret"
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
    return create_app(Settings(**data)).test_client()


def signed(timestamp: float | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {"X-Deskgate-Timestamp": stamp, "X-Deskgate-Signature": sign(secret, stamp, BODY)}


def test_given_a_signed_push_then_the_record_is_queued_for_its_desk(
    client: FlaskClient, redis: Redis[str]
) -> None:
    resp = client.post("/webhooks/servicenow", data=BODY, headers=signed())
    assert resp.status_code == 200 and resp.json["desk"] == "acme_sn"
    assert queued(redis) == [(START_VERIFICATION, ["acme_sn", SYS_ID])]


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
