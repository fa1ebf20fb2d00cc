"""One running system for the end-to-end tests: the sandbox simulators, the webhook app under
gunicorn and a real Celery worker, on a Redis database of their own."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from redis import Redis

from sandbox.driver import DeskDriver
from sandbox.registry import DESKS
from sandbox.retention import keys_without_ttl
from sandbox.stack import Stack, StackOptions, wait_for
from tests.conftest import TEST_CHAIN
from worker.lifecycle.store import Store

E2E_REDIS_URL = os.environ.get("DESKGATE_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")
_people = itertools.count(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A key prefix and a queue of this run's own, so runs sharing a Redis never take each
    # other's tasks.
    run = f"e2e{os.getpid()}"
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=8
    )
    with Stack(options, workdir=tmp_path_factory.mktemp("stack")) as running:
        yield running
    redis: Redis[str] = Redis.from_url(E2E_REDIS_URL, decode_responses=True)
    try:
        # Every key the run left must expire (the worker has stopped: nothing moves any more).
        forever = keys_without_ttl(redis, run)
        assert not forever, f"keys left without a TTL: {forever}"
    finally:
        redis.delete(*redis.scan_iter(f"{run}:*"), options.queue)
        redis.close()


@pytest.fixture(params=DESKS)
def desk(request: pytest.FixtureRequest, stack: Stack) -> Iterator[DeskDriver]:
    driver = stack.driver(request.param)
    driver.set_push(True)
    yield driver
    driver.set_push(True)


@pytest.fixture
def employee(stack: Stack) -> str:
    """A fresh employee enrolled at Incode (its own address, so tests never share sessions)."""
    email = f"employee{next(_people)}@acme.test"
    stack.enrol(email)
    return email


@pytest.fixture(scope="session")
def doctor_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own with beat (a sweep every second, so beat's heartbeat is fresh), for
    ``deskgate doctor``, whose tests stop its worker and beat. The healthy baseline: its Redis
    persists (an RDB schedule set here; the tests' Redis runs without one) and never evicts
    (noeviction, Redis's default); the original settings come back at the end."""
    run = f"doc{os.getpid()}"
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=4,
        beat=True, sweep_interval_seconds=1,
    )  # fmt: skip
    redis: Redis[str] = Redis.from_url(E2E_REDIS_URL, decode_responses=True)
    saved = redis.config_get("save")["save"]
    redis.config_set("save", "3600 1")
    try:
        with Stack(options, workdir=tmp_path_factory.mktemp("doctor")) as running:
            heartbeat = Store(running.redis, run, 3600, chain=TEST_CHAIN)
            wait_for(heartbeat.last_sweep, 60, "beat's first sweep")
            yield running
    finally:
        redis.config_set("save", saved)
        redis.delete(*redis.scan_iter(f"{run}:*"), options.queue)
        redis.close()
