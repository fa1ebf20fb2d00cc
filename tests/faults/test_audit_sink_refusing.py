"""Scenario: the SIEM's HEC token loses its index while verifications run. For half a minute Splunk
answers every batch 400 "Incorrect index" (code 7), as it does for a change on its side; then
the index is allowed again. The third review's finding was that such a SIEM had every event set
aside within about 75 s, and no alert fired. Here nothing is set aside, the forwarding's
``refusing`` figure (the alert's gauge) is up while it refuses, and once fixed every event the
stack recorded arrives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox import siem
from sandbox.common import Server, serve
from sandbox.stack import Stack, free_port, wait_for
from tests.faults.conftest import Observe, People
from tests.faults.lifecycles import Case, check, open_flagged, session_of, wait_markers
from worker import audit
from worker.audit import forwarder as audit_forwarder

pytestmark = pytest.mark.faults

SIEM_PORT = free_port()
STACK_OPTIONS = {
    "extra_config": siem.config_text(f"http://127.0.0.1:{SIEM_PORT}", batch_size=5),
    "extra_env": siem.SECRETS,
}
REFUSING_SECONDS = 30.0
PER_DESK = 2


@pytest.fixture
def intake() -> Iterator[Server]:
    server = serve(siem.create_app(), "127.0.0.1", SIEM_PORT)
    yield server
    server.stop()


def refuse(code: int | None) -> None:
    url = f"http://127.0.0.1:{SIEM_PORT}/_sandbox/refuse"
    httpx.put(url, json={"code": code}).raise_for_status()


def received() -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(f"http://127.0.0.1:{SIEM_PORT}/_sandbox/received").json()[
        "events"
    ]
    return got


def test_a_siem_refusing_every_batch_as_incorrect_index_sets_nothing_aside(
    stack: Stack, intake: Server, people: People, observe: Observe
) -> None:
    prefix = stack.options.key_prefix
    refuse(7)
    since = time.monotonic()
    cases = []
    for kind in ("zendesk", "servicenow"):
        desk = stack.driver(kind)
        employees = people(PER_DESK)
        tickets = open_flagged(desk, employees)
        wait_markers(desk, tickets, "pending", 30)
        for ticket, employee in zip(tickets, employees, strict=True):
            stack.complete(session_of(desk, ticket), "pass")
            cases.append(Case(desk, ticket, employee))
    check(stack, cases)  # the verifications never waited for the SIEM

    time.sleep(max(0.0, since + REFUSING_SECONDS - time.monotonic()))
    refusing = audit_forwarder.status(stack.redis, prefix)
    recorded = [f["id"] for _, f in stack.redis.xrange(audit.stream_key(prefix))]
    assert received() == []
    assert refusing["refusing"] == 1 and refusing["set_aside_total"] == 0
    assert refusing["unsent"] == len(recorded) > 0 and refusing["failures_total"] >= 5

    refuse(None)  # the index is allowed again
    back = time.monotonic()
    got = wait_for(
        lambda: (ids := {e["id"] for e in received()}) >= set(recorded) and ids,
        30,
        "every audit event at the SIEM",
    )
    caught_up = time.monotonic() - back
    assert got == set(recorded)
    after = wait_for(
        lambda: (st := audit_forwarder.status(stack.redis, prefix))["unsent"] == 0 and st,
        10,
        "the forwarder to acknowledge the last batch",
    )
    assert after["refusing"] == 0 and after["set_aside_total"] == 0
    observe(
        events=len(recorded),
        refused_sends=int(refusing["failures_total"]),
        set_aside=int(after["set_aside_total"]),
        caught_up_seconds=round(caught_up, 1),
    )
