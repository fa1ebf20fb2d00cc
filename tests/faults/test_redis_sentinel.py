"""Scenario: Redis behind Sentinel, and the primary crashes mid-run (SIGKILL). The sentinels
promote the replica within a few seconds; the web app, the worker (its broker connection and its
store) and beat find the new primary through the sentinels. Nothing is lost (every
verification reaches its outcome) and nothing is doubled (one Incode link per ticket).

Runs on a Sentinel set of its own (``tests/redis_servers.py``): a primary with its append-only
file, a replica, and three sentinels that call a primary down after one second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis.exceptions import RedisError

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, StackOptions, wait_for
from tests.faults.conftest import Observe, People, assert_every_key_expires
from tests.faults.lifecycles import Case, check, open_flagged, session_of, wait_markers
from tests.redis_servers import SentinelSet, sentinel_set
from worker.dispatch import POLL_DESK, SWEEP

pytestmark = pytest.mark.faults
RECONCILE = 300  # StackOptions' default reconcile_after_seconds
TIME_LIMIT = 10  # task_time_limit_seconds, its least: a lock the crash left runs out sooner
LOCK = TIME_LIMIT + 30  # Settings.task_lock_seconds
RESUME = LOCK + 30  # Flow.resume_after
POLL = 5  # the safety net finds a ticket whose push was refused during the failover


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path_factory.mktemp("sentinel")) as started:
        yield started


@pytest.fixture(scope="module")
def stack(nodes: SentinelSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    options = StackOptions(
        redis_url=nodes.url(),
        key_prefix="dgsentinel",
        queue="dg-sentinel",
        poll_interval_seconds=POLL,
        task_time_limit_seconds=TIME_LIMIT,
    )
    with Stack(options, workdir=tmp_path_factory.mktemp("sentinel-stack")) as running:
        yield running
    assert_every_key_expires(options)


def locks(stack: Stack) -> list[str] | None:
    """The verifications' locks held (None while no primary answers)."""
    try:
        return list(stack.redis.scan_iter(f"{stack.options.key_prefix}:lock:*"))
    except RedisError:
        return None


def flagged(stack: Stack, people: People, per_desk: int) -> list[tuple[DeskDriver, str, str]]:
    out = []
    for kind in ("zendesk", "servicenow"):
        desk = stack.driver(kind)
        employees = people(per_desk)
        out += [(desk, t, e) for t, e in zip(open_flagged(desk, employees), employees, strict=True)]
    return out


def test_given_the_primary_fails_over_mid_run_then_nothing_is_lost_or_doubled(
    stack: Stack, nodes: SentinelSet, people: People, observe: Observe
) -> None:
    gated = flagged(stack, people, 3)
    for desk, ticket, _ in gated:
        wait_markers(desk, [ticket], "pending", 30)
    # Mid-run: new tickets are being flagged (their pushes, gate writes and Incode calls in
    # flight) when the primary dies.
    racing = flagged(stack, people, 3)
    nodes.primary.kill()
    killed_at = time.monotonic()
    # While the sentinels elect, half the gated employees pass (their Incode webhooks may be
    # refused with 503: reconciliation finds those results).
    for desk, ticket, _ in gated[::2]:
        stack.complete(session_of(desk, ticket), "pass")
    wait_for(lambda: nodes.primary_port() == nodes.replica.port, 30, "the failover", every=0.1)
    failover = time.monotonic() - killed_at
    # A task the crash cut short holds its verification's lock until the lock runs out (its
    # release never reached a primary); the sweep then resumes the step (Flow.resume_after:
    # the sweep is told that time has come).
    wait_for(lambda: locks(stack) == [], LOCK + 10, "the crash's locks to run out", every=1)
    stack.send_task(SWEEP, time.time() + RESUME + 1)
    # A start the crash cut short before it recorded anything is found by the next poll (the
    # ticket is still flagged), as beat schedules it.
    for kind in ("zendesk", "servicenow"):
        stack.send_task(POLL_DESK, stack.driver(kind).desk)
    for desk, ticket, _ in racing:
        wait_markers(desk, [ticket], "pending", 30)
    # The worker lived through it (kombu's own Sentinel transport ends it: see
    # worker/sentinel_broker.py).
    assert stack.children["worker"].proc.poll() is None
    for desk, ticket, _ in [*gated[1::2], *racing]:
        stack.complete(session_of(desk, ticket), "pass")
    # New work after the failover: flagged, gated and decided on the new primary.
    after = flagged(stack, people, 1)
    for desk, ticket, _ in after:
        wait_markers(desk, [ticket], "pending", 30)
        stack.complete(session_of(desk, ticket), "fail")
    stack.send_task(SWEEP, time.time() + RECONCILE + 1)
    cases = [Case(d, t, e) for d, t, e in [*gated, *racing]]
    cases += [Case(d, t, e, "failed") for d, t, e in after]
    tally = check(stack, cases)  # one gate note, one outcome, at most one link each
    assert tally.links == len(cases)  # nothing doubled: exactly one Incode session per ticket
    observe(**tally.counts(), failover_seconds=round(failover, 1))
