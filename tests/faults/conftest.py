"""The fault-injection suite's running system: the sandbox simulators, the webhook app under
gunicorn and a real Celery worker, on a Redis database, key prefix and queue of its own.

One scenario is one test function in a module of its own, marked ``faults``. Each module gets a
fresh stack (a scenario may kill a worker or wipe Redis without harming the next one), and every
test starts and ends with the simulators healthy. ``tests/faults/lifecycles.py`` holds what every
scenario asserts (``check``) and the moves that set tickets up. Run with ``make faults``; the
default ``pytest`` run leaves these out (they take minutes).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis

from sandbox.driver import DeskDriver
from sandbox.registry import DESKS
from sandbox.retention import keys_without_ttl
from sandbox.stack import Stack, StackOptions
from worker.redis_client import connect

FAULTS_REDIS_URL = os.environ.get("DESKGATE_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/11")
KEY_PREFIX = "dgfaults"
QUEUE = "deskgate-faults"

_people = itertools.count(1)
# What each scenario observed, printed at the end of the run (docs/reliability.md quotes it).
OBSERVED: dict[str, dict[str, Any]] = {}

Observe = Callable[..., None]
People = Callable[[int], list[str]]


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A module may set ``STACK_OPTIONS`` (``StackOptions`` fields) for its scenario."""
    Redis.from_url(FAULTS_REDIS_URL).flushdb()
    options = StackOptions(
        redis_url=FAULTS_REDIS_URL,
        key_prefix=KEY_PREFIX,
        queue=QUEUE,
        worker_concurrency=16,
        **getattr(request.module, "STACK_OPTIONS", {}),
    )
    with Stack(options, workdir=tmp_path_factory.mktemp("faults")) as running:
        yield running
    assert_every_key_expires(options)


def assert_every_key_expires(options: StackOptions) -> None:
    """After a scenario's stack stopped: no key it left may live for ever (the whole database
    is the run's, so Celery's keys are seen too, and spared)."""
    redis: Redis[str] = connect(options.redis_url)  # Sentinel too
    try:
        forever = keys_without_ttl(redis, options.key_prefix, [options.queue], match="*")
    finally:
        redis.close()
    assert not forever, f"keys left without a TTL: {forever}"


@pytest.fixture(autouse=True)
def healthy(stack: Stack) -> Iterator[None]:
    """No fault, rate limit or latency left over from another test, and pushes on."""
    stack.clear_faults()
    for kind in DESKS:
        stack.driver(kind).set_push(True)
    yield
    stack.clear_faults()


@pytest.fixture(params=DESKS)
def desk(request: pytest.FixtureRequest, stack: Stack) -> DeskDriver:
    return stack.driver(request.param)


@pytest.fixture
def people(stack: Stack) -> People:
    """``people(n)``: n fresh employees enrolled at Incode, each with an address of their own."""

    def enrol(n: int) -> list[str]:
        emails = [f"employee{next(_people)}@acme.test" for _ in range(n)]
        for email in emails:
            stack.enrol(email)
        return emails

    return enrol


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Observe:
    """``observe(**counts)``: record what this scenario saw, for the end-of-run summary."""

    def record(**counts: Any) -> None:
        OBSERVED.setdefault(request.node.nodeid, {}).update(counts)

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not OBSERVED:
        return
    terminalreporter.section("fault scenarios: observed")
    for test, counts in OBSERVED.items():
        terminalreporter.write_line(test)
        terminalreporter.write_line("    " + ", ".join(f"{k}={v}" for k, v in counts.items()))
