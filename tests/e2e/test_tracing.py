"""What an on-call engineer greps for: one request id from a desk's push through the task to
every outside call it makes; ServiceNow lines naming the record's number; and the web process
writing nothing but JSON lines, gunicorn's own included."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import zendesk
from sandbox.stack import Stack, free_port, wait_for
from tests.e2e.test_lifecycle import WAIT, settle

pytestmark = pytest.mark.e2e


def signed_push(stack: Stack, ticket: str) -> tuple[bytes, dict[str, str]]:
    """What the Zendesk trigger sends for ``ticket``, signed with the secret setup stored."""
    body = json.dumps({"ticket_id": ticket}).encode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    secret = next(
        (v for k, v in stack.env.items() if k.endswith("ZENDESK__WEBHOOK_SECRET")),
        zendesk.ZendeskSimConfig.webhook_secret,
    )
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": zendesk.sign(secret, stamp, body),
    }
    return body, headers


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_pushs_request_id_reaches_every_outside_call_and_both_logs(
    stack: Stack, employee: str
) -> None:
    desk = stack.driver("zendesk")
    desk.set_push(False)  # the push is ours, carrying the id
    try:
        ticket = desk.create_ticket("Jane Employee", employee, "MFA reset, traced")
        desk.flag(ticket)
    finally:
        desk.set_push(True)
    stack.reset_calls()
    # Incode stumbles once: the task's retry must keep the id.
    stack.fault("incode", "/omni/b2b", status=503, count=1)
    rid = f"trace-{uuid.uuid4().hex[:12]}"
    body, headers = signed_push(stack, ticket)
    url = f"{stack.web_url}/webhooks/zendesk"
    answer = httpx.post(url, content=body, headers={**headers, "X-Request-Id": rid}, timeout=5)
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == rid
    # The same delivery again: a duplicate, which the web app logs (with the id).
    again = httpx.post(url, content=body, headers={**headers, "X-Request-Id": rid}, timeout=5)
    assert again.json() == {"status": "duplicate"}
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    settle(stack)

    calls = stack.call_log("zendesk")
    deskgate_calls = [c for c in calls if not desk.is_driver_call(f"{c['method']} {c['route']}")]
    assert deskgate_calls and {c["request_id"] for c in deskgate_calls} == {rid}, deskgate_calls
    incode_calls = [c for c in stack.call_log("incode") if c["path"].startswith("/omni/b2b")]
    assert [c["status"] for c in incode_calls] == [503, 200], incode_calls
    assert {c["request_id"] for c in stack.call_log("incode")} == {rid}
    assert any(r.get("request_id") == rid for r in records(list(stack.children["web"].lines)))
    worker = [
        r for r in records(list(stack.children["worker"].lines)) if r.get("request_id") == rid
    ]
    assert {"will retry", "verification sent", "ticket gated"} <= {r["event"] for r in worker}
    assert all(r["ticket"] == f"#{ticket}" for r in worker if r["event"] == "ticket gated")


def test_an_unsafe_request_id_is_replaced_by_one_of_deskgates(stack: Stack) -> None:
    answer = httpx.get(
        f"{stack.web_url}/healthz",
        headers={b"X-Request-Id": 'x\u00e9"; rm -rf /'.encode()},  # not ASCII, not plain
        timeout=5,
    )
    given = answer.headers["X-Request-Id"]
    assert given and given.isalnum() and len(given) == 32


def test_servicenow_lines_name_the_records_number(stack: Stack, employee: str) -> None:
    desk = stack.driver("servicenow")
    ticket = desk.create_ticket("Jane Employee", employee, "MFA reset, numbered")
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    settle(stack)
    number = desk.view(ticket).display
    assert number.startswith("INC")
    lines = [
        r for r in records(list(stack.children["worker"].lines)) if r.get("ticket_id") == ticket
    ]
    assert lines, "no worker line for the record"
    # Every line after the record was read names it by its number (the sys_id as ticket_id).
    assert {"verification sent", "ticket gated"} <= {r["event"] for r in lines}, lines
    assert {r.get("ticket") for r in lines} == {number}, lines


def test_every_line_deskgate_web_writes_is_json(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    command = [sys.executable, "-m", "worker.commands.cli", "web", "--bind", f"127.0.0.1:{port}"]
    web = subprocess.Popen(
        [*command, "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        rid = "json-lines-check"

        def answered() -> bool:
            try:
                got = httpx.get(
                    f"http://127.0.0.1:{port}/healthz", headers={"X-Request-Id": rid}, timeout=2
                )
            except httpx.TransportError:
                return False
            return got.status_code == 200

        wait_for(answered, 30, "deskgate web to answer")
        time.sleep(0.5)  # the access line is written after the response
    finally:
        web.terminate()
        out, err = web.communicate(timeout=30)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of deskgate web is not JSON: {line!r}")
    loggers = {r.get("logger") for r in parsed}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers, loggers
    access = [r for r in parsed if r.get("logger") == "gunicorn.access"]
    assert any(f"request_id={rid}" in r["event"] for r in access), access


def test_every_line_the_worker_writes_is_json(stack: Stack, employee: str) -> None:
    desk = stack.driver("zendesk")
    ticket = desk.create_ticket("Jane Employee", employee, "MFA reset, logged")
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    lines = [line for line in list(stack.children["worker"].lines) if line.strip()]
    assert any('"ticket gated"' in line for line in lines)
    plain = [line for line in lines if not line.startswith("{")]
    assert plain == [], plain  # Celery's banner among them, before `--quiet`
    for line in lines:
        json.loads(line)
