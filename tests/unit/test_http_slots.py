"""More threads than connections: the calls past the pool's size wait in Deskgate's transport,
not in httpcore's pool queue, whose bookkeeping (every queued request against every connection,
at each call's start and end) made the worker's CPU per call grow with the vendors' latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest
from flask import Flask

from connectors.http import Retriable, SlotTransport, new_client, request
from sandbox.common import Server, serve

SLOTS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    app = Flask(__name__)

    @app.get("/slow")
    def slow() -> dict[str, bool]:
        time.sleep(0.05)  # a vendor's latency: calls overlap
        return {"ok": True}

    running = serve(app)
    yield running
    running.stop()


def describe(_: object) -> str:
    return ""


@pytest.mark.parametrize("slots", [SLOTS, 20])
def test_calls_beyond_the_pools_size_never_queue_inside_httpcore(
    server: Server, monkeypatch: pytest.MonkeyPatch, slots: int
) -> None:
    queued: list[int] = []
    pooled: list[int] = []
    assign = httpcore.ConnectionPool._assign_requests_to_connections

    def counting(pool: httpcore.ConnectionPool) -> Any:
        closing = assign(pool)
        queued.append(sum(1 for r in pool._requests if r.is_queued()))
        pooled.append(len(pool.connections))
        return closing

    monkeypatch.setattr(httpcore.ConnectionPool, "_assign_requests_to_connections", counting)
    client = new_client(server.url, timeout=5.0, max_connections=slots)
    answers: list[int] = []

    def calls() -> None:
        for _ in range(5):
            answers.append(request(client, "sim", "GET", "/slow", describe).status_code)

    threads = [threading.Thread(target=calls) for _ in range(4 * slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert answers == [200] * 20 * slots  # every slot came back: nothing waits for ever
    assert queued and max(queued) == 0
    # Each pool's scans stay short however many connections the client has.
    assert max(pooled) <= SlotTransport.SHARD


def test_a_call_that_finds_every_connection_busy_for_its_pool_timeout_is_not_sent(
    server: Server,
) -> None:
    client = new_client(server.url, timeout=0.3, max_connections=1)
    with client.stream("GET", "/slow") as held:  # holds the one connection until closed
        assert held.status_code == 200
        with pytest.raises(Retriable, match="PoolTimeout"):
            request(client, "sim", "GET", "/slow", describe)
    assert request(client, "sim", "GET", "/slow", describe).status_code == 200
    client.close()
