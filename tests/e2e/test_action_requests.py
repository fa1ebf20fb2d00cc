"""Action requests end to end (issue #18): on desks ``deskgate setup`` provisioned, after a
verified result an agent's macro (Zendesk) or UI action (ServiceNow) reaches Deskgate's webhook as
a push it accepts, with no poll; the desk's own record names the agent who asked."""

from __future__ import annotations

import pytest

from config.settings import Settings
from connectors.registry import KINDS
from sandbox.servicenow_driver import ServiceNowDriver
from sandbox.stack import Stack, wait_for
from sandbox.zendesk_driver import ZendeskDriver
from tests.e2e.test_lifecycle import WAIT, gated
from tests.e2e.test_setup import deployed  # noqa: F401 (a fixture)
from worker.dispatch import POLL_DESK

pytestmark = pytest.mark.e2e


def deliveries(stack: Stack, kind: str, ticket: str) -> list[dict[str, object]]:
    """The simulator's log of its pushes for ``ticket``: one entry per attempt."""
    log = stack.sim[kind].get("/_sandbox/webhook_deliveries").json()["deliveries"]
    key = "ticket_id" if kind == "zendesk" else "sys_id"
    return [d for d in log if str(d[key]) == ticket]


@pytest.mark.parametrize("kind", ["zendesk", "servicenow"])
def test_after_a_verified_result_an_agents_request_pushes_with_no_poll(
    stack: Stack,
    deployed: Settings,  # noqa: F811
    employee: str,
    kind: str,
) -> None:
    driver = stack.driver(kind)
    assert isinstance(driver, ZendeskDriver | ServiceNowDriver)
    driver.set_push(True)
    ticket = driver.create_ticket("Jane Employee", employee, "New phone, reset my MFA")
    driver.flag(ticket)
    session = gated(stack, driver, ticket, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: driver.view(ticket).marker == "verified", WAIT, "the verified marker")
    before = len(deliveries(stack, kind, ticket))
    polls = stack.received(POLL_DESK)

    driver.ask_action(ticket, "reset_mfa")  # "Deskgate: reset MFA", as the agent

    def answered() -> list[dict[str, object]]:
        return [d for d in deliveries(stack, kind, ticket)[before:] if d["status"] != "pending"]

    wait_for(answered, WAIT, "the action request's push, answered")
    [pushed] = answered()
    assert pushed["status"] in (200, 202, "delivered"), pushed  # Deskgate accepted it
    assert stack.received(POLL_DESK) == polls

    [(name, config)] = [(n, c) for n, c in deployed.desks.items() if c.kind == kind]
    desk = KINDS[kind].connector(name, config, 10.0, 30.0)
    try:
        read = desk.get_ticket(ticket)
        assert read is not None
        # The agent who pressed it (an id or a user name, never an e-mail): not the requester,
        # not Deskgate's own user.
        if isinstance(driver, ZendeskDriver):
            agent = str(driver.agent.get("/users/me.json").json()["user"]["id"])
        else:
            agent = stack.app_configs["servicenow"].agent_username
        assert desk.requested_by(read, "reset_mfa") == agent != read.requester_id
    finally:
        desk.close()
