"""Property-based fuzz of the inbound endpoints through Flask's test client, with a real Redis
behind the store and the queue: whatever arrives, the answer is never a 5xx, and nothing is
enqueued (or issued) without valid authentication."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from connectors.incode.webhook import RESULT_EVENTS
from connectors.registry import SETTINGS
from connectors.servicenow import push as servicenow
from connectors.ticketing import PushAuth
from connectors.zendesk.push import sign
from tests.conftest import SECRETS, json_body, queued, sent_verification, settings_data
from webhooks.app import create_app

CLIENT_ID = "incode-hooks"
CLIENT_SECRET = "hook-client-secret-0123"
VALID_BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def app(redis: Redis[str]) -> Flask:
    data = settings_data(webhook_max_body_bytes=2048)
    data["incode"].update(
        webhook_oauth_client_id=CLIENT_ID, webhook_oauth_client_secret=CLIENT_SECRET
    )
    settings = SETTINGS(**data)
    # A known session, so a forged webhook naming it has something to (wrongly) enqueue.
    sent_verification(redis, settings)
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- strategies ----------------------------------------------------------------------------

# Header values a client can put on the wire: printable Latin-1, no line breaks.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
header_names = st.sampled_from(
    [
        "X-Zendesk-Webhook-Signature",
        "X-Zendesk-Webhook-Signature-Timestamp",
        "x-incode-secret",
        "Authorization",
        "Content-Type",
        "X-Forwarded-For",
    ]
)
stamps = st.one_of(
    header_text,
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.just(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
ids = st.one_of(st.just("iv-1"), st.just("42"), st.integers(), st.text(max_size=30), json_values)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "ticket_id": ids,
        "interviewId": ids,
        "eventType": st.sampled_from(sorted(RESULT_EVENTS)) | st.text(max_size=30),
        "event_type": st.text(max_size=30),
        "onboardingStatus": st.sampled_from(["ONBOARDING_FINISHED", "UNKNOWN"]) | json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=3000),
    payloads.map(lambda p: json.dumps(p).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 2040).map(lambda n: b"[" * n),  # deep nesting
    st.integers(1, 1000).map(lambda n: b'{"a":' * n),
)
headers = st.dictionaries(header_names, header_text, max_size=4)
forged_bearer = st.builds(lambda t: f"Bearer {t}", header_text)


def bearer(client: FlaskClient) -> str:
    resp = client.post(
        "/webhooks/incode/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": VALID_BASIC},
    )
    assert resp.status_code == 200
    return f"Bearer {json_body(resp)['access_token']}"


def fresh_token_endpoint(redis: Redis[str]) -> None:
    """Forget issued tokens and the token endpoint's rate counters: one fuzz run makes hundreds
    of requests a minute, over the limits by design (test_webhook_oauth.py tests those)."""
    for key in redis.scan_iter("dgtest:w*"):
        redis.delete(key)


def check(resp: Any, redis: Redis[str], authenticated: bool) -> None:
    assert resp.status_code < 500, resp.get_data()
    if authenticated:
        assert resp.status_code in (200, 400, 413)
    else:
        assert resp.status_code in (401, 413)
        assert queued(redis) == []
    redis.delete("deskgate")
    fresh_token_endpoint(redis)


# -- properties ----------------------------------------------------------------------------


@FUZZ
@given(
    body=bodies,
    extra=headers,
    auth=st.sampled_from(["none", "garbage", "wrong-secret", "stale", "valid"]),
    stamp=stamps,
    garbage=header_text,
)
def test_zendesk_push_never_errors_and_never_enqueues_unsigned(
    client: FlaskClient,
    redis: Redis[str],
    body: bytes,
    extra: dict[str, str],
    auth: str,
    stamp: str,
    garbage: str,
) -> None:
    sent = dict(extra)
    if auth == "garbage":  # any signature text, with a timestamp that may be in the window
        sent["X-Zendesk-Webhook-Signature"] = garbage
        sent["X-Zendesk-Webhook-Signature-Timestamp"] = stamp
    elif auth != "none":
        if auth == "valid":
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif auth == "stale":
            stamp = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        secret = "a-guess" if auth == "wrong-secret" else SECRETS["zendesk_push"]
        sent["X-Zendesk-Webhook-Signature"] = sign(secret, stamp, body)
        sent["X-Zendesk-Webhook-Signature-Timestamp"] = stamp
    resp = client.post("/webhooks/zendesk", data=body, headers=sent)
    check(resp, redis, authenticated=auth == "valid")


@FUZZ
@given(
    body=bodies,
    extra=headers,
    auth=st.sampled_from(["none", "forged", "secret", "bearer"]),
    forged=st.one_of(forged_bearer, header_text),
)
def test_incode_webhook_never_errors_and_never_enqueues_unauthenticated(
    client: FlaskClient,
    redis: Redis[str],
    body: bytes,
    extra: dict[str, str],
    auth: str,
    forged: str,
) -> None:
    sent = dict(extra)
    if auth == "forged":
        sent["Authorization" if forged.startswith("Bearer") else "x-incode-secret"] = forged
    elif auth == "secret":
        sent["x-incode-secret"] = SECRETS["incode_webhook"]
    elif auth == "bearer":
        sent["Authorization"] = bearer(client)
    resp = client.post("/webhooks/incode", data=body, headers=sent)
    check(resp, redis, authenticated=auth in ("secret", "bearer"))


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=500),
        st.dictionaries(
            st.sampled_from(["grant_type", "client_id", "client_secret", "scope"]), header_text
        ).map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode()),
    ),
    authorization=st.one_of(
        header_text,
        st.tuples(header_text, header_text).map(
            lambda p: "Basic " + base64.b64encode(f"{p[0]}:{p[1]}".encode()).decode()
        ),
        st.just(VALID_BASIC),
    ),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", ""]),
)
def test_token_endpoint_never_errors_and_issues_only_to_the_client(
    client: FlaskClient, redis: Redis[str], body: bytes, authorization: str, content_type: str
) -> None:
    fresh_token_endpoint(redis)
    before = len(list(redis.scan_iter("dgtest:wtok:*")))
    resp = client.post(
        "/webhooks/incode/token",
        data=body,
        headers={"Authorization": authorization, "Content-Type": content_type},
    )
    assert resp.status_code < 500, resp.get_data()
    issued = len(list(redis.scan_iter("dgtest:wtok:*"))) - before
    if resp.status_code == 200:
        assert authorization == VALID_BASIC and issued == 1
    else:
        assert issued == 0
        assert resp.status_code in (400, 401, 413)


# -- what the fuzz found, pinned -----------------------------------------------------------


def test_a_non_ascii_signature_is_refused_not_a_crash(
    client: FlaskClient, redis: Redis[str]
) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"X-Zendesk-Webhook-Signature": "é", "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    resp = client.post("/webhooks/zendesk", data=b'{"ticket_id": "42"}', headers=headers)
    assert resp.status_code == 401
    push = PushAuth(
        headers={servicenow.SIGNATURE: "v1=é", servicenow.TIMESTAMP: str(int(time.time()))},
        body=b"{}",
        now=time.time(),
        tolerance_seconds=300,
    )
    assert servicenow.verify_push(push, ["secret"]) is False


def test_deeply_nested_json_from_an_authenticated_sender_is_a_400(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b"[" * 2000
    resp = client.post(
        "/webhooks/incode", data=body, headers={"x-incode-secret": SECRETS["incode_webhook"]}
    )
    assert resp.status_code == 400 and "JSON" in json_body(resp)["reason"]
    assert queued(redis) == []
