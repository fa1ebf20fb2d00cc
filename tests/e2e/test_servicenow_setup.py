"""ServiceNow from an empty instance: the stack provisions it with ``deskgate setup``'s code (as
an admin), doctor finds everything in place, a second setup changes nothing, and a record
flagged by clicking the installed UI action goes through a whole lifecycle on a push the
installed business rule script sent and Deskgate's signature check accepted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from connectors.provisioning import Action, AdminCredential, DoctorRequest, SetupRequest, Status
from connectors.servicenow.doctor import doctor
from connectors.servicenow.records import wanted
from connectors.servicenow.setup import setup
from sandbox.servicenow import ServiceNowSimConfig, desk_config
from sandbox.servicenow_driver import DESK, ServiceNowDriver
from sandbox.stack import Stack, wait_for

pytestmark = pytest.mark.e2e
WAIT = 20.0


def test_doctor_is_all_ok_and_a_second_setup_changes_nothing(stack: Stack) -> None:
    sim: ServiceNowSimConfig = stack.app_configs["servicenow"]
    config = desk_config(stack.wiring["servicenow"], sim)
    # A record to try the integration user's write on.
    ServiceNowDriver(stack.sim["servicenow"], sim).create_ticket("Doc Tor", None, "probe")
    checks = doctor(DoctorRequest(desk=DESK, config=config, public_url=stack.web_url))
    assert [(c.name, c.status, c.fix) for c in checks if c.status != Status.OK] == []
    admin = AdminCredential(sim.admin_username, SecretStr(sim.admin_password))
    again = setup(SetupRequest(desk=DESK, config=config, public_url=stack.web_url, admin=admin))
    assert len(again) == len(wanted(DESK, config, stack.web_url))
    assert {c.action for c in again} == {Action.UNCHANGED}


def test_a_record_flagged_by_the_ui_action_goes_through_a_whole_lifecycle(
    stack: Stack, employee: str
) -> None:
    desk = stack.driver("servicenow")
    assert isinstance(desk, ServiceNowDriver)
    desk.set_push(True)
    ticket = desk.create_ticket("Uma Ui", employee, "Locked out, new phone")
    desk.click_verify(ticket)

    wait_for(lambda: desk.notes(ticket), WAIT, "the gate note")
    [session] = stack.sessions(employee)
    deliveries: list[dict[str, Any]] = (
        stack.sim["servicenow"].get("/_sandbox/webhook_deliveries").json()["deliveries"]
    )
    mine = [d for d in deliveries if d["sys_id"] == ticket]
    assert len(mine) == 1
    # Sent by the installed script, answered 2xx by Deskgate: its signature was accepted.
    assert mine[0]["status"] == "delivered"
    assert mine[0]["headers"]["X-Deskgate-Signature"].startswith("v1=")

    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    _gate, outcome = desk.notes(ticket)
    assert "Identity VERIFIED" in outcome
    view = desk.view(ticket)
    assert (view.held, view.flagged) == (False, False)
