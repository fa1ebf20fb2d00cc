"""Every outside call ends by its deadline, however slowly its answer comes: the transport is
exercised against a real server that trickles its answer a byte at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpcore
import pytest
from flask import Flask

from connectors.deadline import DeadlineTransport, deadline
from connectors.http import Retriable, Unanswered, new_client, request
from sandbox.common import Controls, Fault, Server, serve

TRICKLE = 8.0  # the whole answer takes this long; each byte comes far within the read timeout


@pytest.fixture
def server() -> Iterator[Server]:
    app = Flask(__name__)
    controls = Controls("trickle", lambda status, message: app.response_class(message, status))
    controls.install(app)

    @app.post("/slow")
    def slow() -> dict[str, str]:
        return {"interviewId": "x" * 24, "padding": "." * 200}

    running = serve(app)
    controls.faults.append(Fault("/slow", trickle=TRICKLE, count=9))
    yield running
    running.stop()


def describe(_: object) -> str:
    return ""


def test_a_trickled_answer_ends_at_the_calls_deadline(server: Server) -> None:
    client = new_client(server.url, timeout=5.0, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(Unanswered):  # the request went out: its effect is unknown
        request(client, "sim", "POST", "/slow", describe, json={})
    assert time.monotonic() - started < 2.0
    client.close()


def test_the_threads_deadline_bounds_calls_made_inside_it(server: Server) -> None:
    client = new_client(server.url, timeout=5.0, deadline=30.0)
    started = time.monotonic()
    with deadline(1.0), pytest.raises(Unanswered):
        request(client, "sim", "POST", "/slow", describe, json={})
    assert time.monotonic() - started < 2.0
    with deadline(0.0), pytest.raises(Retriable) as raised:  # none left: nothing is sent
        request(client, "sim", "POST", "/slow", describe, json={})
    assert not isinstance(raised.value, Unanswered)
    client.close()


def test_without_a_deadline_the_same_answer_arrives_whole(server: Server) -> None:
    """The control: the server really answers, a read timeout alone never ends it."""
    client = new_client(server.url, timeout=5.0, deadline=30.0)
    started = time.monotonic()
    response = request(client, "sim", "POST", "/slow", describe, json={})
    assert response.json()["interviewId"] == "x" * 24
    assert time.monotonic() - started >= TRICKLE * 0.8
    client.close()


def test_the_transport_wraps_the_pools_network_backend() -> None:
    """httpx takes no network backend, so its pool's is wrapped: an httpx or httpcore upgrade
    that moves it fails here, not silently in production."""
    transport = DeadlineTransport(5.0)
    backend = transport._pool._network_backend
    assert type(backend).__module__ == "connectors.deadline"
    assert isinstance(backend, httpcore.NetworkBackend)
