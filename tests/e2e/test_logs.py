"""What the web and worker processes log, read back after real lifecycles: no employee's email
or phone, no secret or token, no verification link. Runs after the other e2e tests on the same
stack when the whole suite runs, so their lines are checked too."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from flask import Flask

from config.privacy import EMAIL, PHONE
from sandbox.common import Server
from sandbox.driver import DeskDriver
from sandbox.stack import SECRETS, Stack, wait_for

pytestmark = pytest.mark.e2e
WAIT = 20.0
SECRET_FIELDS = re.compile(r"secret|token|password|api_key")
TEST_DOMAIN = "@acme.test"  # every test person's; Celery's node name is also name@host
PHONE_ECHO = "+1 415 555 0134"


def lifecycle(stack: Stack, desk: DeskDriver, employee: str, outcome: str) -> None:
    """One ticket flagged and verified with ``outcome``."""
    ticket = desk.create_ticket("Jane Employee", employee, f"MFA reset ({outcome})")
    if outcome == "pass":  # Incode stumbles once, echoing the employee: the retry path logs
        echo = f"no onboarding for {employee}, phone {PHONE_ECHO}"
        fault = {"path_prefix": "/omni/b2b", "status": 503, "count": 1, "message": echo}
        stack.sim["incode"].post("/_sandbox/faults", json=fault).raise_for_status()
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    session = stack.sessions(employee)[-1]
    stack.complete(session["interviewId"], outcome)
    wait_for(lambda: desk.view(ticket).marker != "pending", WAIT, "the outcome")
    if outcome == "review":
        stack.complete(session["interviewId"], "pass")
        wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the decision")


def lifecycles(stack: Stack, desk: DeskDriver, employee: str) -> None:
    """Pass (after one retry), fail, review then approve; an unknown employee; Incode refusing
    with its own text; a forged webhook. Incode's error texts echo the employee's address and a
    phone number, as vendors do, so Celery's retry line and the ticket note would carry them."""
    for outcome in ("pass", "fail", "review"):
        lifecycle(stack, desk, employee, outcome)
    stranger = desk.create_ticket("Mallory", "mallory.logs@acme.test", "unlock my account")
    desk.flag(stranger)
    wait_for(lambda: desk.view(stranger).marker == "error", WAIT, "the error note")
    # Someone new (the employee's link cap is used up): Incode refuses, echoing them.
    requester = f"refused.{desk.system}{TEST_DOMAIN}"
    refused = desk.create_ticket("Refused Employee", requester, "MFA reset (refused)")
    echo = f"no onboarding for {requester}, phone {PHONE_ECHO}"
    fault = {"path_prefix": "/omni/b2b", "status": 400, "count": 1, "message": echo}
    stack.sim["incode"].post("/_sandbox/faults", json=fault).raise_for_status()
    desk.flag(refused)
    wait_for(lambda: desk.view(refused).marker == "error", WAIT, "the refusal note")
    note = " ".join(desk.notes(refused))
    # The echoed number in any spacing (a bare "555" may be part of a random verification id).
    assert note and requester not in note and "4155550134" not in note.replace(" ", ""), note
    forged = stack.sim["incode"].post(
        f"{stack.web_url}/webhooks/incode",
        json={"eventType": "SESSION_SUCCEEDED", "interviewId": "x", "loginHint": employee},
        headers={"x-incode-secret": "guess"},
    )
    assert forged.status_code == 401


def sensitive_values(stack: Stack) -> dict[str, str]:
    """Everything that must not be logged, each with a name to report it by."""
    values: dict[str, str] = {f"env {k}": v for k, v in SECRETS.items()}
    # And what `deskgate setup` stored for the processes (the webhooks' signing secrets).
    values.update(
        {f"env {k}": v for k, v in stack.env.items()
         if k.startswith("DESKGATE_") and SECRET_FIELDS.search(k.lower()) and v}
    )  # fmt: skip
    for server in stack.servers:
        assert isinstance(server, Server) and isinstance(server.server.app, Flask)
        for name, state in server.server.app.extensions.items():
            config = getattr(state, "config", None)
            if dataclasses.is_dataclass(config):
                for f in dataclasses.fields(config):
                    value = getattr(config, f.name)
                    secretish = SECRET_FIELDS.search(f.name) and not f.name.endswith("_header")
                    if secretish and isinstance(value, str) and value:
                        values[f"{name} config {f.name}"] = value
            # Tokens the simulators issued to Deskgate (OAuth bearers, executive tokens).
            for attr, store in vars(state).items():
                if "token" in attr and isinstance(store, dict):
                    values.update({f"{name} {attr}": t for t in store if isinstance(t, str)})
    for session in stack.sessions():
        values[f"link of {session['interviewId']}"] = session["url"]
        values[f"link path of {session['interviewId']}"] = session["url"].rsplit("/", 1)[-1]
        values[f"login hint of {session['interviewId']}"] = session["loginHint"]
        if session["notification"].get("email"):
            values[f"email of {session['interviewId']}"] = session["notification"]["email"]
    return values


def log_lines(stack: Stack) -> dict[str, list[str]]:
    lines = {f"{name} (stdout)": list(child.lines) for name, child in stack.children.items()}
    for path in sorted(stack.workdir.glob("*.log")):
        lines[path.name] = path.read_text().splitlines()
    return lines


def test_logs_carry_no_personal_data_or_secrets(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    lifecycles(stack, desk, employee)
    wait_for(lambda: stack.redis.llen(stack.options.queue) == 0, WAIT, "the queue to drain")
    secrets = sensitive_values(stack)
    assert employee in secrets.values() and len(secrets) > 20  # the check has teeth
    # The worker wrote its lifecycle lines; the stdout reader has caught up with them.
    wait_for(
        lambda: any("outcome written" in line for line in stack.children["worker"].lines),
        WAIT,
        "the worker's lines",
    )

    leaks: list[str] = []
    sources = log_lines(stack)
    for source, lines in sources.items():
        for number, line in enumerate(lines, 1):
            found: list[Any] = [what for what, value in secrets.items() if value in line]
            found += [
                f"address {m.group(0)!r}"
                for m in EMAIL.finditer(line)
                if m.group(0).endswith(TEST_DOMAIN)
            ]
            found += [f"phone {m.group(0)!r}" for m in PHONE.finditer(line)]
            if found:
                leaks.append(f"{source}:{number}: {', '.join(map(str, found))}: {line.strip()}")
    assert sum(len(lines) for lines in sources.values()) > 50
    assert any('"will retry"' in line for line in stack.children["worker"].lines)
    # Celery's own retry line went through the same redaction (a JSON line, scrubbed).
    retries = [line for line in stack.children["worker"].lines if "Retry in" in line]
    assert retries and all(json.loads(line)["logger"] == "celery.app.trace" for line in retries)
    assert any("***0134" in line for line in retries)
    assert leaks == []
