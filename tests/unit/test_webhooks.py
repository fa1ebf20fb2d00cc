"""The webhook endpoints through Flask's test client, with a real Redis behind the store and the
queue: what is accepted is on the queue, what is refused is not."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from config.settings import Settings
from connectors.registry import SETTINGS
from connectors.zendesk.push import SAME_CONTENT_FIRINGS, sign
from tests.conftest import SECRETS, json_body, queued, sent_verification, settings_data
from webhooks.app import create_app
from worker.dispatch import CHECK_RESULT, POLL_DESK, START_VERIFICATION


@pytest.fixture
def settings() -> Settings:
    data = settings_data(webhook_max_body_bytes=2048)
    data["incode"]["webhook_previous_secret"] = "old-incode-secret"
    return SETTINGS(**data)


@pytest.fixture
def app(settings: Settings, redis: Redis[str]) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def zendesk_headers(
    body: bytes, secret: str = SECRETS["zendesk_push"], skew: float = 0
) -> dict[str, str]:
    stamp = datetime.fromtimestamp(time.time() + skew, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": sign(secret, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


# -- Zendesk push --------------------------------------------------------------------------


def test_given_a_signed_push_then_the_ticket_is_queued(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b'{"ticket_id": "42", "tags": "idv_mfa_reset"}'
    resp = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert resp.status_code == 200
    assert resp.json == {"status": "accepted", "desk": "acme_zendesk", "tickets": ["42"]}
    assert queued(redis) == [(START_VERIFICATION, ["acme_zendesk", "42", "push"])]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {
            "X-Zendesk-Webhook-Signature": "bm9wZQ==",
            "X-Zendesk-Webhook-Signature-Timestamp": "2026-01-01T00:00:00Z",
        },
    ],
)
def test_given_an_unsigned_or_forged_push_then_401_and_nothing_queued(
    client: FlaskClient, redis: Redis[str], headers: dict[str, str]
) -> None:
    resp = client.post("/webhooks/zendesk", data=b'{"ticket_id": "42"}', headers=headers)
    assert resp.status_code == 401
    assert "signature" in json_body(resp)["reason"]
    assert queued(redis) == []


def test_given_a_push_signed_with_another_secret_then_401(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b'{"ticket_id": "42"}'
    resp = client.post(
        "/webhooks/zendesk", data=body, headers=zendesk_headers(body, secret="guess")
    )
    assert resp.status_code == 401
    assert queued(redis) == []


def test_given_a_replayed_push_outside_the_window_then_401(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b'{"ticket_id": "42"}'
    resp = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body, skew=-600))
    assert resp.status_code == 401
    assert queued(redis) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "not valid JSON"), (b"[1]", "JSON object"), (b'{"id": 1}', "ticket_id")],
)
def test_given_a_signed_but_malformed_push_then_400_with_a_reason(
    client: FlaskClient, redis: Redis[str], body: bytes, reason: str
) -> None:
    resp = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert resp.status_code == 400
    assert reason in json_body(resp)["reason"]
    assert queued(redis) == []


def test_given_a_body_over_the_limit_then_413(client: FlaskClient, redis: Redis[str]) -> None:
    body = json.dumps({"ticket_id": "42", "pad": "x" * 4096}).encode()
    resp = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert resp.status_code == 413
    assert queued(redis) == []


def test_given_an_unknown_desk_kind_then_404(client: FlaskClient) -> None:
    assert client.post("/webhooks/jira", data=b"{}").status_code == 404


# -- Zendesk push: replays and retries ------------------------------------------------------


def test_a_replayed_push_is_enqueued_once_and_answered_duplicate(
    client: FlaskClient, redis: Redis[str]
) -> None:
    """Finding 6: one signed push replayed within its window used to give a task (and a ticket
    read) each time."""
    body = b'{"ticket_id": "42"}'
    headers = {**zendesk_headers(body), "X-Zendesk-Webhook-Invocation-Id": "8127361"}
    answers = [client.post("/webhooks/zendesk", data=body, headers=headers) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    assert json_body(answers[0])["status"] == "accepted"
    assert all(r.json == {"status": "duplicate"} for r in answers[1:])
    assert queued(redis) == [(START_VERIFICATION, ["acme_zendesk", "42", "push"])]
    # Without the invocation id it is still the same signed content: a duplicate.
    no_id = {k: v for k, v in headers.items() if "Invocation" not in k}
    assert json_body(client.post("/webhooks/zendesk", data=body, headers=no_id))["status"] == (
        "duplicate"
    )
    assert len(queued(redis)) == 1


def test_made_up_invocation_ids_buy_a_replayer_at_most_a_few_tasks(
    client: FlaskClient, redis: Redis[str]
) -> None:
    """The invocation id is not signed, so a replayer can change it: the signed content admits
    SAME_CONTENT_FIRINGS deliveries in all, however many ids are made up."""
    body = b'{"ticket_id": "42"}'
    signed = zendesk_headers(body)
    statuses = [
        json_body(
            client.post(
                "/webhooks/zendesk",
                data=body,
                headers={**signed, "X-Zendesk-Webhook-Invocation-Id": str(n)},
            )
        )["status"]
        for n in range(50)
    ]
    assert statuses.count("accepted") == SAME_CONTENT_FIRINGS
    assert len(queued(redis)) == SAME_CONTENT_FIRINGS


def test_two_firings_within_one_second_are_two_deliveries(
    client: FlaskClient, redis: Redis[str]
) -> None:
    """A ticket flagged again right after its outcome: same template body, same second, so the
    same signed bytes; Zendesk's invocation ids tell the firings apart."""
    body = b'{"ticket_id": "42"}'
    signed = zendesk_headers(body)
    for invocation in ("101", "102"):
        headers = {**signed, "X-Zendesk-Webhook-Invocation-Id": invocation}
        resp = client.post("/webhooks/zendesk", data=body, headers=headers)
        assert json_body(resp)["status"] == "accepted"
    assert len(queued(redis)) == 2


def test_a_retry_of_one_invocation_re_signed_later_is_a_duplicate(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b'{"ticket_id": "42"}'
    first = {**zendesk_headers(body), "X-Zendesk-Webhook-Invocation-Id": "77"}
    later = {**zendesk_headers(body, skew=5), "X-Zendesk-Webhook-Invocation-Id": "77"}
    assert first["X-Zendesk-Webhook-Signature"] != later["X-Zendesk-Webhook-Signature"]
    assert (
        json_body(client.post("/webhooks/zendesk", data=body, headers=first))["status"]
        == "accepted"
    )
    assert json_body(client.post("/webhooks/zendesk", data=body, headers=later))["status"] == (
        "duplicate"
    )
    # Another invocation with other signed content is a delivery of its own.
    other = {**zendesk_headers(body, skew=9), "X-Zendesk-Webhook-Invocation-Id": "78"}
    assert (
        json_body(client.post("/webhooks/zendesk", data=body, headers=other))["status"]
        == "accepted"
    )
    assert len(queued(redis)) == 2


def test_a_push_key_outlives_the_whole_timestamp_window(
    client: FlaskClient, redis: Redis[str], settings: Settings
) -> None:
    body = b'{"ticket_id": "42"}'
    client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    [key] = redis.keys("dgtest:seen:push:*")
    # A timestamp may be `tolerance` ahead of our clock and is accepted until `tolerance` after
    # it: a replay stays possible for up to twice the tolerance after the first delivery.
    assert redis.ttl(key) > 2 * settings.webhook_tolerance_seconds


def test_given_the_enqueue_fails_then_503_and_the_retry_is_accepted(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = b'{"ticket_id": "42"}'
    headers = {**zendesk_headers(body), "X-Zendesk-Webhook-Invocation-Id": "5"}
    redis.set("deskgate", "not a list")  # the queue's key: LPUSH answers WRONGTYPE
    failed = client.post("/webhooks/zendesk", data=body, headers=headers)
    assert failed.status_code == 503 and failed.headers["Retry-After"]
    assert redis.keys("dgtest:seen:*") == []
    redis.delete("deskgate")
    retried = client.post("/webhooks/zendesk", data=body, headers=headers)  # byte for byte
    assert retried.status_code == 200 and json_body(retried)["status"] == "accepted"
    assert queued(redis) == [(START_VERIFICATION, ["acme_zendesk", "42", "push"])]


# -- Incode --------------------------------------------------------------------------------


@pytest.fixture
def session(settings: Settings, redis: Redis[str]) -> str:
    return sent_verification(redis, settings)


def incode_post(
    client: FlaskClient, payload: dict[str, Any], secret: str = SECRETS["incode_webhook"]
) -> Any:
    return client.post("/webhooks/incode", json=payload, headers={"x-incode-secret": secret})


def test_given_a_result_event_then_the_check_is_queued_once(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    for i in range(5):
        resp = incode_post(client, {"eventType": "SESSION_SUCCEEDED", "interviewId": "iv-1"})
        assert resp.status_code == 200
        assert resp.mimetype == "application/json"  # Incode wants JSON with its 200
        assert resp.json == {"status": "duplicate" if i else "accepted"}
    assert [name for name, _ in queued(redis)] == [CHECK_RESULT]
    assert queued(redis)[0][1][:2] == [session, "SESSION_SUCCEEDED"]


def test_given_the_enqueue_fails_then_503_and_incodes_retry_is_accepted(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    """Finding 7: the dedupe key used to be taken before the enqueue, so the retry Incode makes
    after our 503 was dropped as a duplicate and the result waited for reconciliation."""
    payload = {"eventType": "SESSION_SUCCEEDED", "interviewId": "iv-1"}
    redis.set("deskgate", "not a list")  # the queue's key: LPUSH answers WRONGTYPE
    assert incode_post(client, payload).status_code == 503
    assert redis.keys("dgtest:seen:*") == []
    redis.delete("deskgate")
    retried = incode_post(client, payload)
    assert retried.status_code == 200 and retried.json == {"status": "accepted"}
    assert queued(redis) == [(CHECK_RESULT, [session, "SESSION_SUCCEEDED", None])]


@pytest.mark.parametrize(
    "payload",
    [
        {"event_type": "Session Failed", "interviewId": "iv-1"},
        {"interviewId": "iv-1", "onboardingStatus": "ONBOARDING_FINISHED", "clientId": "c"},
        {"eventType": "session-pending-review", "interviewId": "iv-1"},
    ],
)
def test_tolerant_event_parsing(
    client: FlaskClient, redis: Redis[str], session: str, payload: dict[str, Any]
) -> None:
    assert incode_post(client, payload).json == {"status": "accepted"}
    assert len(queued(redis)) == 1


def test_given_a_progress_event_then_acknowledged_and_ignored(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    resp = incode_post(client, {"eventType": "SESSION_STARTED", "interviewId": "iv-1"})
    assert resp.status_code == 200 and json_body(resp)["status"] == "ignored"
    assert queued(redis) == []


def test_given_an_unknown_session_then_200_so_incode_stops(
    client: FlaskClient, redis: Redis[str]
) -> None:
    resp = incode_post(client, {"eventType": "SESSION_SUCCEEDED", "interviewId": "nope"})
    assert resp.status_code == 200 and json_body(resp)["status"] == "unknown_session"
    # No check for a session nobody knows; the desks are polled so a lost mapping is recovered,
    # once per half minute however many such webhooks arrive.
    assert queued(redis) == [(POLL_DESK, ["acme_zendesk", True])]
    incode_post(client, {"eventType": "SESSION_FAILED", "interviewId": "nope-2"})
    assert len(queued(redis)) == 1


@pytest.mark.parametrize("secret", ["", "wrong", SECRETS["incode_webhook"] + "x"])
def test_given_a_missing_or_wrong_secret_then_401_and_nothing_queued(
    client: FlaskClient, redis: Redis[str], session: str, secret: str
) -> None:
    resp = incode_post(client, {"eventType": "SESSION_SUCCEEDED", "interviewId": "iv-1"}, secret)
    assert resp.status_code == 401
    assert "x-incode-secret" in json_body(resp)["reason"]
    assert queued(redis) == []


def test_an_empty_header_secret_never_authenticates() -> None:
    """Settings refuse an empty Incode secret; the check refuses one that gets through anyway."""
    from connectors.incode.webhook import authentic

    assert not authentic({"x-incode-secret": ""}, "x-incode-secret", ["", "a" * 16])
    assert not authentic({"x-incode-secret": ""}, "x-incode-secret", [""])
    assert not authentic({}, "x-incode-secret", [""])
    assert authentic({"x-incode-secret": "a" * 16}, "x-incode-secret", ["", "a" * 16])


def test_the_previous_secret_still_works_during_rotation(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    payload = {"eventType": "SESSION_FAILED", "interviewId": "iv-1"}
    assert incode_post(client, payload, "old-incode-secret").status_code == 200
    assert len(queued(redis)) == 1


def test_given_malformed_json_then_400(client: FlaskClient, redis: Redis[str]) -> None:
    resp = client.post(
        "/webhooks/incode", data=b"{oops", headers={"x-incode-secret": SECRETS["incode_webhook"]}
    )
    assert resp.status_code == 400 and "JSON" in json_body(resp)["reason"]
    missing = incode_post(client, {"eventType": "SESSION_SUCCEEDED"})
    assert missing.status_code == 400 and "interviewId" in json_body(missing)["reason"]
    assert queued(redis) == []


# -- health --------------------------------------------------------------------------------


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_when_redis_is_gone(redis: Redis[str]) -> None:
    app = create_app(SETTINGS(**settings_data(redis_url="redis://127.0.0.1:1/0")))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503 and "Redis" in json_body(resp)["reason"]


def test_given_redis_is_down_then_503_so_the_sender_retries() -> None:
    app = create_app(SETTINGS(**settings_data(redis_url="redis://127.0.0.1:1/0")))
    client = app.test_client()
    resp = incode_post(client, {"eventType": "SESSION_SUCCEEDED", "interviewId": "iv-1"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30" and "retry" in json_body(resp)["reason"]
    body = b'{"ticket_id": "42"}'
    push = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert push.status_code == 503
