"""The set-up path, end to end: the stack's simulators start empty and ``deskgate setup`` (the
command, as an operator runs it) provisioned them; doctor agrees, a second run changes nothing,
a ticket an agent flags with the macro goes through its lifecycle, and Zendesk pushes once for
it, whatever the requester and other agents write on the ticket while it is held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config.settings import Settings
from connectors.provisioning import AdminCredential, DoctorRequest, Status
from connectors.registry import KINDS, SETTINGS
from sandbox.registry import SIMULATORS
from sandbox.stack import Stack, wait_for
from sandbox.zendesk_driver import ZendeskDriver
from tests.e2e.test_lifecycle import WAIT, gated, settle

pytestmark = pytest.mark.e2e


@pytest.fixture
def zendesk(stack: Stack) -> Iterator[ZendeskDriver]:
    driver = stack.driver("zendesk")
    assert isinstance(driver, ZendeskDriver)
    driver.set_push(True)
    yield driver


@pytest.fixture
def deployed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Deskgate's settings exactly as the stack's processes load them (config + environment)."""
    for name, value in stack.env.items():
        if name.startswith("DESKGATE_"):
            monkeypatch.setenv(name, value)
    return SETTINGS()


def test_the_stack_was_provisioned_by_setup_and_a_second_run_changes_nothing(
    stack: Stack, deployed: Settings
) -> None:
    creates = [line for line in stack.setup_output if line.startswith("create")]
    assert any(" trigger " in line for line in creates), stack.setup_output
    assert any(" webhook " in line for line in creates), stack.setup_output
    for desk, config in deployed.desks.items():
        kind = KINDS[config.kind]
        if kind.setup is None or not SIMULATORS[config.kind].admin:
            continue
        again = stack.setup_command(desk)
        assert again.returncode == 0, again.stderr
        changes = [line for line in again.stdout.splitlines() if not line.startswith("To ")]
        assert changes and all(line.startswith("unchanged") for line in changes), again.stdout


def test_doctor_passes_on_the_provisioned_desks(stack: Stack, deployed: Settings) -> None:
    for desk, config in deployed.desks.items():
        # A ticket for the write check to try an empty update on (an empty table is a warning).
        stack.driver(config.kind).create_ticket("Doc Tor", None, "probe")
        kind = KINDS[config.kind]
        admin = SIMULATORS[config.kind].admin
        if kind.doctor is None or admin is None:
            continue
        credential = AdminCredential(admin[0], SecretStr(admin[1]))
        public_url = deployed.public_base
        checks = kind.doctor(DoctorRequest(desk, config, public_url, admin=credential))
        failing = [(c.name, c.status, c.detail, c.fix) for c in checks if c.status is not Status.OK]
        assert checks and not failing, failing


def test_a_ticket_flagged_by_the_macro_is_verified_and_pushed_once_whatever_is_written_on_it(
    stack: Stack, zendesk: ZendeskDriver, employee: str
) -> None:
    ticket = zendesk.create_ticket("Jane Employee", employee, "New phone, reset my MFA")
    zendesk.click_macro(ticket, "MFA reset")  # the agent's one click
    session = gated(stack, zendesk, ticket, employee)
    assert zendesk.view(ticket).marker == "pending"
    settle(stack, 0.3)

    def pushes() -> int:
        return len({p["invocation_id"] for p in zendesk.pushes() if str(p["ticket_id"]) == ticket})

    assert pushes() == 1
    # While the employee has the link: the requester asks, an agent notes; neither pushes.
    zendesk.reply(ticket, "Any news? I still cannot log in.")
    zendesk.comment(ticket, "Called the employee, they are on it.")
    settle(stack, 0.5)
    assert pushes() == 1

    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: zendesk.view(ticket).marker == "verified", WAIT, "the verified marker")
    zendesk.reply(ticket, "Thanks, it works.")
    settle(stack, 0.5)
    assert pushes() == 1
    assert len(zendesk.notes(ticket)) == 2  # the gate note, the outcome note


def test_the_command_env_file_runs_deskgates_commands_against_the_stack(stack: Stack) -> None:
    """What ``deskgate dev`` tells a person to source: with nothing else from the environment,
    doctor reaches Redis and Incode with the stack's secrets, and report reads its trail."""
    values = dict(line.split("=", 1) for line in stack.write_command_env().read_text().splitlines())
    env = {"PATH": os.environ["PATH"], **values}

    def deskgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker.commands.cli", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    checked = deskgate("doctor", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    status = {(c["system"], c["name"]): c["status"] for c in json.loads(checked.stdout)["checks"]}
    assert status[("redis", "answers")] == "ok"
    assert status[("incode", "oauth token")] == "ok"
    reported = deskgate("report", "--since", "1h", "--format", "json")
    assert reported.returncode == 0, reported.stderr
    assert json.loads(reported.stdout)["totals"]["verifications"] >= 0
