"""Scenario: the SIEM is down for a minute while verifications run. For the first half it
answers 503 (HEC's "Server is busy"), for the second nothing listens on its port (connection
refused). Then it comes back, and its first answer is lost (it takes the batch but answers after
Deskgate's timeout, so the batch is sent again). Every audit event the stack recorded arrives,
none that was not recorded, a duplicate (at-least-once) only ever as a copy of the same event
with the same id, and each verification's events in the order they were recorded (one worker
forwards here)."""

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
DOWN_SECONDS = 60.0
PER_DESK = 4


@pytest.fixture(scope="module")
def app() -> Any:
    return siem.create_app()


@pytest.fixture
def intake(app: Any) -> Iterator[list[Server]]:
    """The SIEM simulator on its fixed port; the test may stop it and serve it again."""
    servers = [serve(app, "127.0.0.1", SIEM_PORT)]
    yield servers
    servers[-1].stop()


def control(path: str, **body: Any) -> httpx.Response:
    url = f"http://127.0.0.1:{SIEM_PORT}/_sandbox/{path}"
    resp = httpx.put(url, json=body) if body else httpx.get(url)
    resp.raise_for_status()
    return resp


def recorded(stack: Stack) -> list[tuple[str, dict[str, str]]]:
    return list(stack.redis.xrange(audit.stream_key(stack.options.key_prefix)))


def test_nothing_is_lost_while_the_siem_is_down(
    stack: Stack, app: Any, intake: list[Server], people: People, observe: Observe
) -> None:
    prefix = stack.options.key_prefix
    control("down", down=True)
    down_since = time.monotonic()
    cases = []
    for kind in ("zendesk", "servicenow"):
        desk = stack.driver(kind)
        employees = people(PER_DESK)
        tickets = open_flagged(desk, employees)
        wait_markers(desk, tickets, "pending", 30)
        for i, (ticket, employee) in enumerate(zip(tickets, employees, strict=True)):
            outcome = "pass" if i % 2 == 0 else "fail"
            stack.complete(session_of(desk, ticket), outcome)
            final = "verified" if outcome == "pass" else "failed"
            cases.append(Case(desk, ticket, employee, final=final))
    check(stack, cases)  # the verifications themselves never waited for the SIEM

    # Half the minute answering 503, the other half refusing connections.
    time.sleep(max(0.0, down_since + DOWN_SECONDS / 2 - time.monotonic()))
    assert control("received").json()["events"] == []
    intake[-1].stop()
    time.sleep(max(0.0, down_since + DOWN_SECONDS - time.monotonic()))
    while_down = audit_forwarder.status(stack.redis, prefix)
    assert while_down["unsent"] == len(recorded(stack)) > 0
    assert while_down["failures_total"] >= 2 and while_down["lag_seconds"] >= DOWN_SECONDS / 2

    back = time.monotonic()
    intake.append(serve(app, "127.0.0.1", SIEM_PORT))
    lost_answer = {"path_prefix": siem.HEC_PATH, "status": 0, "stage": "after", "delay": 5.0}
    httpx.post(f"http://127.0.0.1:{SIEM_PORT}/_sandbox/faults", json=lost_answer).raise_for_status()
    control("down", down=False)
    expected = recorded(stack)
    ids = [fields["id"] for _, fields in expected]

    def all_arrived() -> list[dict[str, Any]] | None:
        got: list[dict[str, Any]] = control("received").json()["events"]
        return got if {e["id"] for e in got} >= set(ids) else None

    got = wait_for(all_arrived, 60, "every audit event at the SIEM")
    caught_up = time.monotonic() - back
    received_ids = [e["id"] for e in got]
    assert set(received_ids) == set(ids)  # none missing, none invented
    assert len(received_ids) > len(ids)  # the batch whose answer was lost came twice
    by_id: dict[str, dict[str, Any]] = {}
    for event in got:
        event = {k: v for k, v in event.items() if k not in ("via", "hec")}
        assert by_id.setdefault(event["id"], event) == event  # a duplicate is the same event
    assert by_id == {f["id"]: audit.event_of(f) for _, f in expected}
    first_seen = list(dict.fromkeys(received_ids))
    for vid in {f["verification"] for _, f in expected}:
        mine = [f["id"] for _, f in expected if f["verification"] == vid]
        assert [i for i in first_seen if i in mine] == mine, f"{vid}: out of order"
    # The acknowledgement follows the SIEM's answer: give the last one its moment.
    after = wait_for(
        lambda: (st := audit_forwarder.status(stack.redis, prefix))["unsent"] == 0 and st,
        10,
        "the forwarder to acknowledge the last batch",
    )
    assert after["lag_seconds"] == 0
    observe(
        events=len(ids),
        received=len(received_ids),
        duplicates=len(received_ids) - len(set(received_ids)),
        failed_sends=int(after["failures_total"]),
        caught_up_seconds=round(caught_up, 1),
    )
