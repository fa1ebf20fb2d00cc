"""Scenario 6: bad input at every endpoint, and tickets that change under Deskgate's feet.

Pushes and Incode webhooks with a missing, wrong or stale signature or secret are refused with
401 and enqueue nothing; malformed JSON gets 400; a body over ``webhook_max_body_bytes`` (64 KiB by
default) gets 413; a webhook for a session nobody knows gets 2xx (so Incode stops retrying) and a
log line. A ticket deleted or closed between its trigger and its gate is left as the agent left
it, and Deskgate stops working on it; a requester changed after the link went out does not get
the previous requester's result, and the ticket says so."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest

from connectors.servicenow import push as servicenow_push
from sandbox import incode, servicenow, zendesk
from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.faults.conftest import Observe, People
from tests.faults.lifecycles import (
    WAIT,
    Case,
    check,
    open_flagged,
    quiet,
    session_of,
    start,
    wait_markers,
)
from worker.dispatch import CHECK_RESULT, START_VERIFICATION, SWEEP

pytestmark = pytest.mark.faults

MAX_BODY = 65536  # Settings.webhook_max_body_bytes, the documented default
OVERSIZED = "x" * (MAX_BODY + 1)
DAY = 86400.0
INCODE_HEADER = incode.IncodeSimConfig.webhook_secret_header
INCODE_SECRET = incode.IncodeSimConfig.webhook_secret


def push_body(desk: DeskDriver, ticket: str, **extra: Any) -> bytes:
    """What the desk's trigger or business rule sends for ``ticket``."""
    key = "ticket_id" if desk.system == "zendesk" else "sys_id"
    return json.dumps({key: ticket, **extra}).encode()


def signed(desk: DeskDriver, body: bytes, *, secret: str = "", at: float = 0.0) -> dict[str, str]:
    """The desk's signature headers for ``body`` (the desk's own secret unless another is given;
    signed now unless ``at`` says when)."""
    at = at or time.time()
    headers = {"Content-Type": "application/json"}
    if desk.system == "zendesk":
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = secret or zendesk.ZendeskSimConfig.webhook_secret
        headers["X-Zendesk-Webhook-Signature-Timestamp"] = stamp
        headers["X-Zendesk-Webhook-Signature"] = zendesk.sign(key, stamp, body)
    else:
        stamp = str(int(at))
        key = secret or servicenow.ServiceNowSimConfig.webhook_secret
        headers["X-Deskgate-Timestamp"] = stamp
        headers["X-Deskgate-Signature"] = servicenow_push.sign(key, stamp, body)
    return headers


def refuse_bad_pushes(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """Forged, stale, malformed and oversized pushes for a flagged ticket change nothing; the
    genuine push that follows gates it."""
    [employee] = people(1)
    [ticket] = open_flagged(desk, [employee], announce=False)
    url = f"{stack.web_url}/webhooks/{desk.system}"
    body = push_body(desk, ticket)
    starts = stack.received(START_VERIFICATION)
    attempts: list[tuple[str, bytes, dict[str, str], int]] = [
        ("missing signature", body, {"Content-Type": "application/json"}, 401),
        ("wrong secret", body, signed(desk, body, secret="not-the-secret"), 401),
        ("stale signature", body, signed(desk, body, at=time.time() - 600), 401),
        ("signature from the future", body, signed(desk, body, at=time.time() + 600), 401),
        ("malformed JSON", body[:-1], signed(desk, body[:-1]), 400),
        ("no ticket id", b'{"id": 1}', signed(desk, b'{"id": 1}'), 400),
    ]
    big = push_body(desk, ticket, padding=OVERSIZED)
    attempts.append(("oversized body", big, signed(desk, big), 413))
    answers = {}
    for what, content, headers, expected in attempts:
        resp = httpx.post(url, content=content, headers=headers, timeout=10)
        answers[what] = resp.status_code
        assert resp.status_code == expected, f"{what}: {resp.status_code} {resp.text}"
    quiet(stack)
    assert stack.received(START_VERIFICATION) == starts  # nothing was enqueued
    assert desk.notes(ticket) == [] and stack.sessions(employee) == []

    resp = httpx.post(url, content=body, headers=signed(desk, body), timeout=10)
    assert resp.status_code == 200
    wait_markers(desk, [ticket], "pending", WAIT)  # the same endpoint does work
    return {
        "refused": answers,
        "tasks_enqueued": 0,
        "ticket": ticket,
        "employee": employee,
    }


def refuse_bad_incode_webhooks(
    stack: Stack, desk: DeskDriver, ticket: str, employee: str
) -> dict[str, Any]:
    """With the employee's result in at Incode, forged, stale, malformed and oversized webhooks
    change nothing; one for a session nobody knows is acknowledged and logged; the genuine
    webhook that follows writes the outcome."""
    session = session_of(desk, ticket)
    stack.complete(session, "pass", webhook="none")
    url = f"{stack.web_url}/webhooks/incode"
    body = json.dumps({"eventType": "SESSION_SUCCEEDED", "interviewId": session}).encode()
    json_type = {"Content-Type": "application/json"}
    good = {**json_type, INCODE_HEADER: INCODE_SECRET}
    checks = stack.received(CHECK_RESULT)
    attempts: list[tuple[str, bytes, dict[str, str], int]] = [
        ("missing secret", body, json_type, 401),
        ("wrong secret", body, {**json_type, INCODE_HEADER: "guess"}, 401),
        ("stale secret", body, {**json_type, INCODE_HEADER: "sandbox-incode-secret-2024"}, 401),
        ("malformed JSON", body[:-1], good, 400),
        ("no interviewId", b'{"eventType": "SESSION_SUCCEEDED"}', good, 400),
        ("oversized body", body[:-1] + f', "padding": "{OVERSIZED}"}}'.encode(), good, 413),
    ]
    answers = {}
    for what, content, headers, expected in attempts:
        resp = httpx.post(url, content=content, headers=headers, timeout=10)
        answers[what] = resp.status_code
        assert resp.status_code == expected, f"{what}: {resp.status_code} {resp.text}"
    unknown = json.dumps({"eventType": "SESSION_SUCCEEDED", "interviewId": "f" * 24}).encode()
    resp = httpx.post(url, content=unknown, headers=good, timeout=10)
    assert (resp.status_code, resp.json()["status"]) == (200, "unknown_session")
    answers["unknown session"] = resp.status_code
    quiet(stack)
    assert stack.received(CHECK_RESULT) == checks  # nothing was enqueued to read a result
    assert desk.view(ticket).marker == "pending" and len(desk.notes(ticket)) == 1
    logged = stack.logged("web", "incode webhook for an unknown session")
    assert any(r.get("session") == "f" * 24 for r in logged)

    resp = httpx.post(url, content=body, headers=good, timeout=10)
    assert resp.status_code == 200
    tally = check(stack, [Case(desk, ticket, employee)])
    return {"refused": answers, "tasks_enqueued": 0, **tally.counts()}


def gone_before_the_gate(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """Four flagged tickets: two deleted or closed before Deskgate reads them, two while
    Deskgate is asking Incode for the link (after its read, before its gate write)."""
    early_delete, early_close, late_delete, late_close = employees = people(4)
    tickets = dict(zip(employees, open_flagged(desk, employees, announce=False), strict=True))
    desk.delete(tickets[early_delete])
    desk.edit(tickets[early_close], status="closed")
    start(stack, desk, [tickets[early_delete], tickets[early_close]])

    for employee, act in ((late_delete, "delete"), (late_close, "close")):
        stack.fault("incode", "/omni/b2b/onboarding/request-new", status=0, delay=1.0)
        start(stack, desk, [tickets[employee]])
        wait_for(lambda: not stack.pending_faults("incode"), WAIT, "request-new to stall")
        if act == "delete":
            desk.delete(tickets[employee])
        else:
            desk.edit(tickets[employee], status="closed")
        wait_for(partial(stack.sessions, employee), WAIT, "the link")
    quiet(stack)
    # The sweep a day later (past reconciliation and link expiry) settles what is left; one two
    # days later must find nothing: Deskgate no longer works on these tickets.
    checks, handed_out = stack.received(CHECK_RESULT), []
    for days in (1, 2):
        stack.send_task(SWEEP, time.time() + days * DAY)
        quiet(stack)
        handed_out.append(stack.received(CHECK_RESULT) - checks)
        checks += handed_out[-1]
    assert handed_out[-1] == 0, f"still handed out two days later: {handed_out}"

    for employee in (early_close, late_close):
        view = desk.view(tickets[employee])
        assert view.status == desk.statuses["closed"], f"{employee}: reopened to {view.status}"
        assert view.marker is None and desk.notes(tickets[employee]) == []
    links = {e: len(stack.sessions(e)) for e in employees}
    assert links == {early_delete: 0, early_close: 0, late_delete: 1, late_close: 1}
    return {"tickets": 4, "left_as_the_agent_left_them": 4, "links": sum(links.values()),
            "sweeps_a_day_and_two_days_later": handed_out}  # fmt: skip


def requester_changed(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """The link went to the first requester; an agent then puts someone else on the ticket."""
    first, second = people(2)
    [ticket] = open_flagged(desk, [first])
    wait_markers(desk, [ticket], "pending", WAIT)
    desk.change_requester(ticket, "Someone Else", second)
    stack.complete(session_of(desk, ticket), "pass")
    tally = check(stack, [Case(desk, ticket, first, "error")])
    outcome = desk.notes(ticket)[-1]
    assert "requester changed after the link was sent" in outcome and "VERIFIED" not in outcome
    assert stack.sessions(second) == []  # and nobody sent the new requester anything
    return tally.counts()


def test_given_bad_input_then_it_is_refused_and_changed_tickets_are_left_alone(
    stack: Stack, desk: DeskDriver, people: People, observe: Observe
) -> None:
    began = time.monotonic()
    pushes = refuse_bad_pushes(stack, desk, people)
    ticket, employee = pushes.pop("ticket"), pushes.pop("employee")
    observe(pushes=pushes)
    observe(incode_webhooks=refuse_bad_incode_webhooks(stack, desk, ticket, employee))
    observe(gone_before_the_gate=gone_before_the_gate(stack, desk, people))
    observe(requester_changed=requester_changed(stack, desk, people))
    observe(seconds=round(time.monotonic() - began, 1))
