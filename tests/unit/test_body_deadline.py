"""The body deadline (webhooks/deadline.py) in the real app, through Flask's test client with a
real Redis behind it: a body that trickles in gets 408 and nothing is queued; a whole body is
served as before; an oversized declared length is refused without being read.

The trickle is a stream whose read waits on gevent's hub, as a socket read does in gunicorn's
gevent worker (tests/faults/test_slow_clients.py drives the same through real sockets)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import gevent
import pytest
from flask.testing import FlaskClient
from redis import Redis

from connectors.registry import SETTINGS
from connectors.zendesk.push import sign
from tests.conftest import SECRETS, queued, settings_data
from webhooks.app import create_app

DEADLINE = 0.2


class Trickle(io.RawIOBase):
    """A client that sent its headers and then ``total`` bytes, one every ``every`` seconds."""

    def __init__(self, every: float, total: int = 8) -> None:
        self.every = every
        self.total = total
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.reads == self.total:
            return 0
        self.reads += 1
        gevent.sleep(self.every)
        buffer[0:1] = b" "
        return 1


class Untouchable(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        raise AssertionError("an oversized body must not be read")


@pytest.fixture
def client(redis: Redis[str]) -> FlaskClient:
    data = settings_data(webhook_max_body_bytes=2048, webhook_body_timeout_seconds=DEADLINE)
    return create_app(SETTINGS(**data)).test_client()


def signed(body: bytes) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": sign(SECRETS["zendesk_push"], stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def test_given_a_trickled_body_then_408_within_the_deadline_and_nothing_queued(
    client: FlaskClient, redis: Redis[str]
) -> None:
    slow = Trickle(every=0.5)
    began = gevent.get_hub().loop.now()
    resp = client.post(
        "/webhooks/zendesk",
        headers={"Content-Type": "application/json"},
        environ_overrides={"wsgi.input": io.BufferedReader(slow), "CONTENT_LENGTH": "8"},
    )
    waited = gevent.get_hub().loop.now() - began
    assert resp.status_code == 408
    assert resp.json is not None and "did not arrive in time" in resp.json["reason"]
    assert resp.headers["Connection"] == "close"
    assert waited < 1.0 and 1 <= slow.reads < slow.total
    assert queued(redis) == []


def test_given_a_trickled_chunked_body_then_408(client: FlaskClient) -> None:
    resp = client.post(
        "/webhooks/zendesk",
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": io.BufferedReader(Trickle(every=0.5))},
    )
    assert resp.status_code == 408


def test_given_a_whole_body_then_it_is_served_as_before(
    client: FlaskClient, redis: Redis[str]
) -> None:
    body = json.dumps({"ticket_id": "42"}).encode()
    resp = client.post("/webhooks/zendesk", data=body, headers=signed(body))
    assert resp.status_code == 200, resp.text
    assert [args[1] for _, args in queued(redis)] == ["42"]


def test_given_a_declared_length_over_the_limit_then_413_without_reading(
    client: FlaskClient,
) -> None:
    resp = client.post(
        "/webhooks/zendesk",
        headers={"Content-Type": "application/json"},
        environ_overrides={
            "wsgi.input": io.BufferedReader(Untouchable()),
            "CONTENT_LENGTH": "4096",
        },
    )
    assert resp.status_code == 413
