"""ServiceNow as a real instance has it, end to end on the simulator: the Table API takes a
write without any condition, so a caller changed between Deskgate's re-read and its outcome write
shows only in what that write returns; the business rule `deskgate setup` installs pushes for a
choice flag, the default boolean flag and the UI action, with no poll involved; a write ACL keeps
Deskgate's status field from agents."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.options import StackOptions, Wiring
from sandbox.registry import SIMULATORS
from sandbox.servicenow_driver import FLAG_FIELD, ServiceNowDriver
from sandbox.simulator import Simulator
from sandbox.stack import Stack, wait_for
from tests.e2e.conftest import E2E_REDIS_URL
from worker.dispatch import POLL_DESK

pytestmark = pytest.mark.e2e
WAIT = 20.0


def servicenow(stack: Stack) -> ServiceNowDriver:
    desk = stack.driver("servicenow")
    assert isinstance(desk, ServiceNowDriver)
    desk.set_push(True)
    return desk


def test_a_caller_changed_just_before_the_outcome_write_is_overturned_at_once(
    stack: Stack, employee: str
) -> None:
    desk = servicenow(stack)
    ticket = desk.create_ticket("Rita Race", employee, "Reset my MFA")
    desk.flag(ticket)
    wait_for(lambda: desk.notes(ticket), WAIT, "the gate note")
    [session] = stack.sessions(employee)
    # Lands after Deskgate's re-read, just before its outcome PATCH.
    desk.change_requester_before_next_write(ticket, "Someone Else", "someone.else@acme.test")
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the error marker")
    _gate, verified, overturned = desk.notes(ticket)
    assert "Identity VERIFIED" in verified  # written for a record whose caller had just changed
    assert "requester changed" in overturned and "not applied" in overturned


def pushed_without_a_poll(stack: Stack, desk: ServiceNowDriver, ticket: str) -> None:
    """The gate note comes from a push the installed rule sent and Deskgate accepted; no poll
    ran meanwhile (the stack runs no beat, and no test asked for one)."""
    polls = stack.received(POLL_DESK)
    wait_for(lambda: desk.notes(ticket), WAIT, "the gate note")
    deliveries = stack.sim["servicenow"].get("/_sandbox/webhook_deliveries").json()["deliveries"]
    assert [d["status"] for d in deliveries if d["sys_id"] == ticket] == ["delivered"]
    assert stack.received(POLL_DESK) == polls


def test_a_choice_flag_and_the_ui_action_push_with_no_poll(stack: Stack, employee: str) -> None:
    desk = servicenow(stack)
    flagged = desk.create_ticket("Cho Ice", employee, "Reset my MFA")
    desk.flag(flagged)  # an agent sets the choice field u_idv_request
    pushed_without_a_poll(stack, desk, flagged)
    second = f"ui.{employee}"
    stack.enrol(second)
    clicked = desk.create_ticket("Ui Action", second, "Unlock my account")
    desk.click_verify(clicked)
    pushed_without_a_poll(stack, desk, clicked)


def test_an_agent_cannot_set_deskgates_status_field(stack: Stack) -> None:
    """The write ACL on the status field (the sandbox instance starts with the one `deskgate
    setup` is to make): an agent's write of it is ignored (200, the other fields written);
    Deskgate's own user writes it."""
    desk = servicenow(stack)
    ticket = desk.create_ticket("Ann Agent", None, "anything")
    sim = stack.app_configs["servicenow"]
    api = httpx.Client(base_url=f"{stack.sim['servicenow'].base_url}/api/now/table", timeout=10)
    with api:
        agent = (sim.agent_username, sim.agent_password)
        forged = {"u_idv_status": "verified", "short_description": "edited"}
        tried = api.patch(f"/incident/{ticket}", auth=agent, json=forged)
        assert tried.status_code == 200
        record = desk.raw(ticket)["record"]
        assert (record["short_description"], record.get("u_idv_status", "")) == ("edited", "")
        mine = api.patch(f"/incident/{ticket}", auth=(sim.username, sim.password),
                         json={"u_idv_status": "error"})  # fmt: skip
        assert mine.json()["result"]["u_idv_status"] == "error"


def _boolean_flag(original: Simulator[Any]) -> Simulator[Any]:
    """The sandbox desk as a default desk: no flag_field, triggers or consumed_value in its
    config, so the boolean u_idv_required with {"true": ...} (what most installs run)."""

    def config_text(wiring: Wiring) -> str:
        text = original.config_text(wiring)
        text = re.sub(r"(?m)^(flag_field|consumed_value) = .*\n", "", text)
        return re.sub(r"(?s)\n\[desks\.[a-z_]+\.triggers\]\n.*?(\n\n|$)", "\n", text)

    return dataclasses.replace(original, config_text=config_text)


@pytest.fixture(scope="module")
def boolean_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run = f"bool{os.getpid()}"
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=4
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SIMULATORS, "servicenow", _boolean_flag(SIMULATORS["servicenow"]))
        with Stack(options, workdir=tmp_path_factory.mktemp("boolean")) as stack:
            yield stack
    stack.redis.delete(*stack.redis.scan_iter(f"{run}:*"), options.queue)


def test_the_default_boolean_flag_and_its_ui_action_push_with_no_poll(
    boolean_stack: Stack,
) -> None:
    stack = boolean_stack
    desk = servicenow(stack)
    assert "flag_field" not in stack.config_path.read_text()
    sim = stack.app_configs["servicenow"]
    agent = (sim.agent_username, sim.agent_password)
    for n, how in enumerate(("agent", "ui action")):
        email = f"boolean{n}.{os.getpid()}@acme.test"
        stack.enrol(email)
        ticket = desk.create_ticket("Bo Olean", email, "Reset my MFA")
        if how == "agent":  # an agent ticks the box: the Table API takes true
            desk.api.patch(f"/incident/{ticket}", json={"u_idv_required": True},
                           auth=agent).raise_for_status()  # fmt: skip
        else:
            desk.click_verify(ticket)
        pushed_without_a_poll(stack, desk, ticket)
        assert desk.raw(ticket)["record"].get(FLAG_FIELD, "") == ""  # the choice field unused
