"""``deskgate explain <desk> <ticket>`` against the sandbox desks: the ticket quoted as agents
quote it (``#12``, ``INC0010003``), the diagnosis first, and never the employee's address."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, settle

pytestmark = pytest.mark.e2e
CAP = 3  # the sandbox's per-requester cap (the default)


def digitless(text: str) -> str:
    return re.sub(r"\d+", "N", text)


def explain(stack: Stack, desk: DeskDriver, ticket: str, employee: str) -> dict[str, Any]:
    quoted = desk.view(ticket).display
    done = stack.command("explain", desk.desk, quoted, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    text = stack.command("explain", desk.desk, quoted)
    assert text.returncode == 0, text.stderr
    for output in (done.stdout, text.stdout):
        assert employee not in output and employee.split("@")[0] not in output
    found: dict[str, Any] = json.loads(done.stdout)
    # The diagnosis comes first (its "N s ago" may have moved on between the two runs).
    assert digitless(text.stdout.splitlines()[0]) == digitless(found["diagnosis"])
    assert found["ticket"]["ticket"] == quoted
    return found


def test_a_mistyped_flag_is_named_as_a_typo(stack: Stack, desk: DeskDriver, employee: str) -> None:
    ticket = desk.create_ticket("Jane Employee", employee, "reset my MFA")
    typo = desk.mistype_flag(ticket)
    found = explain(stack, desk, ticket, employee)
    assert found["diagnosis"].startswith("Not flagged: the ticket carries")
    assert "typo'd tag" in found["diagnosis"] and repr(typo) in found["diagnosis"]
    assert found["near_misses"] == [{"flag": typo, "trigger": found["near_misses"][0]["trigger"]}]
    assert found["store"]["last_verification"] == "" and found["audit"] == []


def test_a_contact_too_new_is_the_reason_given(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket = desk.create_ticket("Jane Employee", employee, "I lost my phone")
    desk.change_contact(ticket, f"caller.{employee}")
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the error note")
    settle(stack)
    found = explain(stack, desk, ticket, employee)
    diagnosis = found["diagnosis"]
    assert diagnosis.startswith("No link: the requester's login hint, e-mail or phone of record")
    assert "changed too recently" in diagnosis and "flag the ticket again after" in diagnosis
    assert [e["code"] for e in found["audit"] if e["event"] == "verification.error"] == [
        "contact_too_new"
    ]


def test_a_link_cap_is_the_reason_given_with_the_requesters_counts(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    tickets = [desk.create_ticket("Jane Employee", employee, "locked out") for _ in range(CAP + 1)]
    for ticket in tickets:
        desk.flag(ticket)

    def settled() -> list[str | None] | None:
        found = [desk.view(t).marker for t in tickets]
        return found if all(m in ("pending", "error") for m in found) else None

    markers = wait_for(settled, WAIT, "every ticket gated or refused")
    capped = tickets[markers.index("error")]
    settle(stack)
    found = explain(stack, desk, capped, employee)
    assert found["diagnosis"].startswith("No link: link cap hit"), found["diagnosis"]
    requester_short = next(c for c in found["link_caps"] if c["cap"] == "requester short")
    assert requester_short == {
        "cap": "requester short", "window_minutes": 60, "used": CAP, "limit": CAP, "reached": True
    }  # fmt: skip
    # A gated one of the same burst: an open verification waiting for the employee.
    waiting = explain(stack, desk, tickets[markers.index("pending")], employee)
    assert waiting["diagnosis"].startswith("Waiting for the employee: the link went to ")


def test_a_verified_ticket_says_so_and_where_the_link_went(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket = desk.create_ticket("Jane Employee", employee, "new phone")
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    stack.complete(stack.sessions(employee)[-1]["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the outcome")
    settle(stack)
    found = explain(stack, desk, ticket, employee)
    assert found["diagnosis"].startswith("Verified "), found["diagnosis"]
    masked = found["store"]["last_verification"]["destination"]
    assert "***" in masked and masked in found["diagnosis"]
    assert "(consumed): flag the ticket again" in found["diagnosis"]
    events = [e["event"] for e in found["audit"]]
    assert events[0] == "verification.requested" and "verification.verified" in events


def test_an_unknown_ticket_is_said_to_be_unknown(stack: Stack, desk: DeskDriver) -> None:
    done = stack.command("explain", desk.desk, "999999")
    assert done.returncode == 1 and done.stdout.startswith("No ticket '999999'")
