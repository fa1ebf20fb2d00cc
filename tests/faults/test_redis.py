"""Scenario 2: Redis restarted mid-run (with AOF, as docker-compose.yml runs it), and Redis wiped.

These run on a Redis server of their own (a ``redis-server`` child on a free port), since the
test stops it, starts it again and flushes it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, StackOptions, free_port, wait_for
from tests.faults.conftest import Observe, People, assert_every_key_expires
from tests.faults.lifecycles import Case, check, open_flagged, session_of, wait_markers
from worker.dispatch import SWEEP

pytestmark = pytest.mark.faults
RECONCILE = 300  # StackOptions' default reconcile_after_seconds


class RedisServer:
    """A private redis-server with the append-only file on, as production runs it."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (.ci/run installs it)"
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir),
             "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, 10, "redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_timeout=1).ping())
        except RedisError:
            return False

    def stop(self) -> None:
        """A clean shutdown: what an operator's restart does (the AOF is already on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    options = StackOptions(redis_url=redis_server.url, key_prefix="dgredis", queue="dg-redis")
    with Stack(options, workdir=tmp_path_factory.mktemp("redis-stack")) as running:
        yield running
    assert_every_key_expires(options)


def gated_tickets(stack: Stack, people: People, per_desk: int) -> list[tuple[DeskDriver, str, str]]:
    out = []
    for kind in ("zendesk", "servicenow"):
        desk = stack.driver(kind)
        employees = people(per_desk)
        tickets = open_flagged(desk, employees)
        wait_markers(desk, tickets, "pending", 30)
        out += [(desk, t, e) for t, e in zip(tickets, employees, strict=True)]
    return out


def test_given_redis_restarts_mid_run_then_nothing_is_lost(
    stack: Stack, redis_server: RedisServer, people: People, observe: Observe
) -> None:
    waiting = gated_tickets(stack, people, 2)  # gated, results not in yet
    redis_server.stop()
    # While Redis is down, two employees pass; Incode's webhooks are refused with 503 (retry
    # later), and its retries run out before Redis is back.
    refused = 0
    for desk, ticket, _ in waiting[::2]:
        result = stack.complete(session_of(desk, ticket), "pass")
        refused += sum(1 for d in result["deliveries"] if d.get("status") == 503)
    health = httpx.get(f"{stack.web_url}/readyz", timeout=5)
    redis_server.start()
    wait_for(lambda: httpx.get(f"{stack.web_url}/readyz").status_code == 200, 30, "readiness")

    # The rest pass after the restart: their webhooks work again.
    for desk, ticket, _ in waiting[1::2]:
        stack.complete(session_of(desk, ticket), "pass")
    # New work after the restart: the worker reconnected to the broker.
    fresh = gated_tickets(stack, people, 1)
    for desk, ticket, _ in fresh:
        stack.complete(session_of(desk, ticket), "fail")
    # The refused webhooks are never redelivered: reconciliation finds those results.
    stack.send_task(SWEEP, time.time() + RECONCILE + 1)
    cases = [Case(d, t, e) for d, t, e in waiting] + [Case(d, t, e, "failed") for d, t, e in fresh]
    tally = check(stack, cases)
    assert health.status_code == 503
    assert refused > 0
    observe(**tally.counts(), webhooks_refused_503=refused)


def test_given_redis_is_wiped_then_outcomes_still_reach_their_tickets(
    stack: Stack, people: People, observe: Observe
) -> None:
    waiting = gated_tickets(stack, people, 2)
    Redis.from_url(stack.options.redis_url).flushall()  # the lifecycle store and the queue: gone
    # Incode's webhooks name sessions Redis no longer knows: Deskgate polls the desks, finds the
    # gated tickets, rebuilds each verification from its gate note and asks Incode itself.
    for n, (desk, ticket, _) in enumerate(waiting):
        stack.complete(session_of(desk, ticket), "pass" if n % 2 else "fail")
    cases = [
        Case(d, t, e, "verified" if n % 2 else "failed") for n, (d, t, e) in enumerate(waiting)
    ]
    tally = check(stack, cases)
    recovered = stack.logged("worker", "verification recovered from the ticket")
    assert len(recovered) == len(waiting)
    observe(**tally.counts(), recovered_from_gate_notes=len(recovered))
