"""The audit trail of a whole lifecycle on the running stack (a real worker, the desks' and
Incode's simulators): exactly the expected events, in order, with the push that started it and
nothing personal in them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.driver import DeskDriver
from sandbox.servicenow_driver import ServiceNowDriver
from sandbox.stack import Stack, wait_for
from sandbox.zendesk_driver import ZendeskDriver
from tests.e2e.test_lifecycle import WAIT, flagged_ticket, gated
from worker import audit

pytestmark = pytest.mark.e2e


def trail(stack: Stack, session: str) -> list[dict[str, Any]]:
    """The events of the verification whose Incode session is ``session``, oldest first."""
    entries = stack.redis.xrange(audit.stream_key(stack.options.key_prefix))
    found = [audit.event_of(fields) for _, fields in entries]
    vid = next((e["verification"] for e in found if e["session"] == session), None)
    return [e for e in found if vid is not None and e["verification"] == vid]


def test_a_verified_lifecycle_leaves_exactly_its_events(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    events = wait_for(
        lambda: (
            (t := trail(stack, session["interviewId"]))[-1:] and t[-1]["code"] == "outcome" and t
        ),
        WAIT,
        "the outcome write's event",
    )
    assert [(e["event"], e["state"], e["code"]) for e in events] == [
        ("verification.requested", "requested", ""),
        ("verification.sent", "sent", ""),
        ("ticket.written", "sent", "gate"),
        ("verification.verified", "verified", ""),
        ("ticket.written", "verified", "outcome"),
    ]
    assert {e["origin"] for e in events} == {"push"}
    assert {e["desk"] for e in events} == {desk.desk}
    assert len({e["id"] for e in events}) == 5
    assert events[1]["destination"] == f"{employee[0]}***@acme.test"
    times = [e["time"] for e in events]
    assert times == sorted(times)  # RFC 3339 with milliseconds sorts as time does
    assert events[-1]["outcome"] == "verified"
    assert employee not in json.dumps(events) and session["url"] not in json.dumps(events)


def test_the_trail_names_who_flagged_the_ticket_as_the_desk_records_it(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    """Another agent flags the ticket in the desk's own UI; every event of the verification
    names that agent by the desk's record (Zendesk: the author of the ticket audit that added
    the tag, a user id; ServiceNow: the user of the ``sys_audit`` row that set the flag)."""
    ticket = desk.create_ticket("Jane Employee", employee, "Please reset my MFA, new phone")
    if isinstance(desk, ZendeskDriver):
        desk.click_macro(ticket)
        expected = str(desk.agent.get("/users/me.json").json()["user"]["id"])
    else:
        assert isinstance(desk, ServiceNowDriver)
        desk.click_verify(ticket)
        expected = desk.config.agent_username
    session = gated(stack, desk, ticket, employee)
    events = wait_for(lambda: trail(stack, session["interviewId"]), WAIT, "the trail")
    assert events[0]["event"] == "verification.requested"
    assert {e["flagged_by"] for e in events} == {expected}
    assert "@" not in expected
