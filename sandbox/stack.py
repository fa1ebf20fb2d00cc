"""The whole system on one machine: simulators, the webhook app under gunicorn, a Celery worker
and (optionally) beat, wired by a generated config file. The demo, ``deskgate dev`` and the
end-to-end tests all run on this.

Simulators run as threads of the calling process (real HTTP servers on loopback); Deskgate's own
parts run as child processes exactly as in production, so a test sees what an operator would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import httpx
from celery import Celery
from redis import Redis

from sandbox import incode, servicenow, zendesk
from sandbox.common import Server, pooled_client, serve
from sandbox.zendesk_triggers import documented_trigger
from worker.cli import gunicorn_args

ZENDESK_AGENT = "agent@acme.test"
NOTE_SECRET = "sandbox-note-sealing-secret"
SECRETS = {
    "DESKGATE_NOTE_SECRET": NOTE_SECRET,
    "DESKGATE_INCODE__CLIENT_SECRET": incode.IncodeSimConfig.client_secret,
    "DESKGATE_INCODE__API_KEY": incode.IncodeSimConfig.api_key,
    "DESKGATE_INCODE__EXECUTIVE_PASSWORD": incode.IncodeSimConfig.executive_password,
    "DESKGATE_INCODE__WEBHOOK_SECRET": incode.IncodeSimConfig.webhook_secret,
    "DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN": zendesk.ZendeskSimConfig.api_token,
    "DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_SECRET": zendesk.ZendeskSimConfig.webhook_secret,
    "DESKGATE_DESKS__ACME_SERVICENOW__PASSWORD": servicenow.ServiceNowSimConfig.password,
    "DESKGATE_DESKS__ACME_SERVICENOW__WEBHOOK_SECRET": (
        servicenow.ServiceNowSimConfig.webhook_secret
    ),
}
# The same two reasons on both desks: tags on Zendesk, a choice field's values on ServiceNow.
TRIGGERS = {"idv_mfa_reset": "MFA reset", "idv_account_unlock": "account unlock"}
SN_TRIGGERS = {"mfa_reset": "MFA reset", "account_unlock": "account unlock"}
SN_FLAG_FIELD = "u_idv_request"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy, and return that (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """``wait_until``, raising naming ``what`` on timeout."""
    value = wait_until(check, timeout, every)
    if not value:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
    return value


@dataclass
class Ports:
    web: int = 0
    zendesk: int = 0
    servicenow: int = 0
    incode: int = 0

    def resolved(self) -> Ports:
        return Ports(
            *(p or free_port() for p in (self.web, self.zendesk, self.servicenow, self.incode))
        )


@dataclass
class StackOptions:
    redis_url: str
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    key_prefix: str = "dg"
    queue: str = "deskgate"
    employees: frozenset[str] = frozenset()
    link_validity_minutes: int = 30
    poll_interval_seconds: int = 60
    sweep_interval_seconds: int = 30
    reconcile_after_seconds: int = 300
    worker_concurrency: int = 16
    task_time_limit_seconds: int = 120
    http_deadline_seconds: float = 30.0
    # How old the employees' profiles look (users the drivers create): an employee's e-mail and
    # phone are old, so only a change a test makes is new to Deskgate's destination-age check.
    user_age_days: float = 30.0
    beat: bool = False
    log_format: str = "json"


class Child:
    """A child process whose output is kept (and can be waited on for a line)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.log = log
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as out:
            for line in self.proc.stdout:
                self.lines.append(line)
                out.write(line)
                out.flush()

    def wait_for_line(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                tail = "".join(self.lines[-20:])
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")
            return any(text in line for line in self.lines)

        wait_for(seen, timeout, f"{self.name} to say {text!r}", every=0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)


class Stack:
    def __init__(self, options: StackOptions, workdir: Path | None = None) -> None:
        self.options = options
        self.ports = options.ports.resolved()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="deskgate-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.servers: list[Server] = []
        self.children: dict[str, Child] = {}
        host = options.host
        self.web_url = f"http://{host}:{self.ports.web}"
        self.zendesk_url = f"http://{host}:{self.ports.zendesk}"
        self.servicenow_url = f"http://{host}:{self.ports.servicenow}"
        self.incode_url = f"http://{host}:{self.ports.incode}"
        self.redis: Redis[str] = Redis.from_url(options.redis_url, decode_responses=True)
        self.config_path = self.workdir / "deskgate.toml"
        self.env = self._env()
        self.zendesk = pooled_client(
            base_url=f"{self.zendesk_url}/api/v2",
            auth=(f"{ZENDESK_AGENT}/token", zendesk.ZendeskSimConfig.api_token),
            timeout=10,
        )
        self.producer = Celery("deskgate-sandbox", broker=options.redis_url)
        self.producer.conf.update(
            task_serializer="json", accept_content=["json"], task_default_queue=options.queue
        )
        self.sim = {
            "zendesk": pooled_client(base_url=self.zendesk_url, timeout=10),
            "servicenow": pooled_client(base_url=self.servicenow_url, timeout=10),
            "incode": pooled_client(base_url=self.incode_url, timeout=30),
        }

    # -- wiring ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESKGATE_")}
        env.update(SECRETS)
        env.update(
            DESKGATE_CONFIG=str(self.config_path),
            REDIS_URL=self.options.redis_url,
            PYTHONUNBUFFERED="1",
        )
        return env

    def config_text(self) -> str:
        o = self.options
        triggers = "\n".join(f'{tag} = "{reason}"' for tag, reason in TRIGGERS.items())
        sn_triggers = "\n".join(f'{v} = "{reason}"' for v, reason in SN_TRIGGERS.items())
        return f"""# Generated by sandbox/stack.py; secrets come from the environment.
key_prefix = "{o.key_prefix}"
queue = "{o.queue}"
log_format = "{o.log_format}"
sweep_interval_seconds = {o.sweep_interval_seconds}
http_timeout_seconds = 5
http_deadline_seconds = {o.http_deadline_seconds}
task_time_limit_seconds = {o.task_time_limit_seconds}

[incode]
api_url = "{self.incode_url}"
auth_url = "{self.incode_url}"
integration_reference = "{incode.IncodeSimConfig.integration_reference}"
client_id = "{incode.IncodeSimConfig.client_id}"
executive_email = "{incode.IncodeSimConfig.executive_email}"
reconcile_after_seconds = {o.reconcile_after_seconds}

[desks.acme_zendesk]
kind = "zendesk"
base_url = "{self.zendesk_url}"
email = "{ZENDESK_AGENT}"
channel = "EMAIL"
link_validity_minutes = {o.link_validity_minutes}
poll_interval_seconds = {o.poll_interval_seconds}

[desks.acme_zendesk.triggers]
{triggers}

[desks.acme_servicenow]
kind = "servicenow"
base_url = "{self.servicenow_url}"
username = "{servicenow.ServiceNowSimConfig.username}"
table = "incident"
flag_field = "{SN_FLAG_FIELD}"
consumed_value = ""
channel = "EMAIL"
link_validity_minutes = {o.link_validity_minutes}
poll_interval_seconds = {o.poll_interval_seconds}

[desks.acme_servicenow.triggers]
{sn_triggers}
"""

    def start(self) -> Stack:
        o = self.options
        self.config_path.write_text(self.config_text())
        web_hooks = self.web_url + "/webhooks"
        self.servers.append(
            serve(
                zendesk.create_app(
                    zendesk.ZendeskSimConfig(
                        email=ZENDESK_AGENT,
                        webhook_url=f"{web_hooks}/zendesk",
                        trigger_tags=frozenset(TRIGGERS),
                        user_age_days=o.user_age_days,
                        # README's trigger: fires while Deskgate does not hold the ticket.
                        triggers=(documented_trigger(TRIGGERS, zendesk.WEBHOOK_ID),),
                    )
                ),
                o.host,
                self.ports.zendesk,
            )
        )
        self.servers.append(
            serve(
                servicenow.create_app(
                    servicenow.ServiceNowSimConfig(
                        webhook_url=f"{web_hooks}/servicenow",
                        flag_field=SN_FLAG_FIELD,
                        flag_values=frozenset(SN_TRIGGERS),
                        user_age_days=o.user_age_days,
                    )
                ),
                o.host,
                self.ports.servicenow,
            )
        )
        self.servers.append(
            serve(
                incode.create_app(
                    incode.IncodeSimConfig(employees=o.employees, webhook_url=f"{web_hooks}/incode")
                ),
                o.host,
                self.ports.incode,
            )
        )
        python = sys.executable
        self.children["web"] = Child(
            "web",
            [python, *gunicorn_args(f"{o.host}:{self.ports.web}")],  # as `deskgate web` does
            self.env,
            self.workdir / "web.log",
        )  # fmt: skip
        self.start_worker(wait=False)
        if o.beat:
            self.children["beat"] = Child(
                "beat",
                [python, "-m", "celery", "-A", "worker.main", "beat", "--loglevel", "INFO",
                 "--schedule", str(self.workdir / "beat-schedule")],
                self.env,
                self.workdir / "beat.log",
            )  # fmt: skip
        self.children["worker"].wait_for_line(" ready.", timeout=60)
        wait_for(self._web_ready, 30, "the webhook app to answer /readyz")
        return self

    def start_worker(self, wait: bool = True) -> None:
        """Start (or restart) the Celery worker child process."""
        o = self.options
        self.children["worker"] = Child(
            "worker",
            [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "--pool", "threads",
             "--concurrency", str(o.worker_concurrency), "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"deskgate-{self.ports.web}@%h"],
            self.env,
            self.workdir / "worker.log",
        )  # fmt: skip
        if wait:
            self.children["worker"].wait_for_line(" ready.", timeout=60)

    def kill_worker(self) -> None:
        """SIGKILL the worker: no shutdown, no acks, whatever it was doing stops mid-step."""
        worker = self.children["worker"]
        worker.proc.kill()
        worker.stop()

    def _web_ready(self) -> bool:
        if self.children["web"].proc.poll() is not None:
            raise RuntimeError("web exited:\n" + "".join(self.children["web"].lines[-20:]))
        try:
            return httpx.get(f"{self.web_url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()
        for server in self.servers:
            server.stop()
        for client in (self.zendesk, *self.sim.values()):
            client.close()
        self.redis.close()
        self.producer.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- acting like the people and systems around Deskgate ---------------------------------

    def send_task(self, name: str, *args: Any) -> None:
        """Enqueue a Deskgate task as beat would (to run a poll or a sweep on demand)."""
        self.producer.send_task(name, args=list(args))

    def enrol(self, login_hint: str) -> None:
        self.sim["incode"].post("/_sandbox/employees", json={"loginHint": login_hint})

    def sessions(self, login_hint: str | None = None) -> list[dict[str, Any]]:
        params = {"loginHint": login_hint} if login_hint else None
        data: list[dict[str, Any]] = (
            self.sim["incode"].get("/_sandbox/sessions", params=params).json()["sessions"]
        )
        return data

    def complete(self, interview_id: str, outcome: str, **extra: Any) -> dict[str, Any]:
        resp = self.sim["incode"].post(
            f"/_sandbox/sessions/{interview_id}/complete", json={"outcome": outcome, **extra}
        )
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def driver(self, kind: str) -> DeskDriver:
        return ZendeskDriver(self) if kind == "zendesk" else ServiceNowDriver(self)

    def calls(self, system: str) -> dict[str, int]:
        counts: dict[str, int] = self.sim[system].get("/_sandbox/calls").json()["counts"]
        return counts

    def reset_calls(self) -> None:
        for client in self.sim.values():
            client.delete("/_sandbox/calls").raise_for_status()

    def call_log(self, system: str) -> list[dict[str, Any]]:
        """Every call a simulator served, oldest first: method, path, route, status, ``at``."""
        log: list[dict[str, Any]] = self.sim[system].get("/_sandbox/calls").json()["calls"]
        return log

    # -- faults ------------------------------------------------------------------------------

    def fault(self, system: str, path_prefix: str, **fault: Any) -> None:
        """The next matching requests fail or stall (``sandbox.common.Fault``'s fields)."""
        body = {"path_prefix": path_prefix, **fault}
        self.sim[system].post("/_sandbox/faults", json=body).raise_for_status()

    def pending_faults(self, system: str) -> list[dict[str, Any]]:
        """Faults no request has taken yet."""
        faults: list[dict[str, Any]] = self.sim[system].get("/_sandbox/faults").json()["faults"]
        return faults

    def clear_faults(self) -> None:
        """Every simulator back to normal: no faults, no rate limit, no added latency."""
        for client in self.sim.values():
            client.delete("/_sandbox/faults").raise_for_status()
            client.delete("/_sandbox/rate_limit").raise_for_status()
            client.put("/_sandbox/latency", json={"seconds": 0}).raise_for_status()

    # -- Deskgate's own records ----------------------------------------------------------------

    def logged(self, child: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of a child process (``web``, ``worker``) with this ``event``."""
        found = []
        for line in list(self.children[child].lines):
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    def worker_busy(self) -> int:
        """Tasks queued or held by the worker: running, prefetched, or waiting out a retry's
        countdown (which the queue alone does not show). A worker that does not answer is busy."""
        inspect = self.producer.control.inspect(timeout=2.0, limit=1)  # one worker
        held = self.redis.llen(self.options.queue)
        for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            if not reply:
                return held + 1
            held += sum(len(tasks) for tasks in reply.values())
        return held

    def received(self, task: str) -> int:
        """How many times the worker has received ``task`` (retries included)."""
        marker = f"Task {task}["
        # Celery's lines are JSON records like Deskgate's own (config/logging.py); the event
        # ends "received".
        return sum(1 for line in list(self.children["worker"].lines) if marker in line
                   and (line.rstrip().endswith("received") or '] received"' in line))  # fmt: skip


AgentStatus = Literal["open", "solved", "closed"]


@dataclass(frozen=True)
class TicketView:
    status: str  # the desk's own status value
    marker: str | None  # Deskgate's state marker on the ticket
    flagged: bool  # a trigger is present
    held: bool  # in the desk's gate status (Zendesk hold, ServiceNow On Hold)
    display: str  # what people call it: "#12", "INC0010003"
    subject: str = ""  # the title agents edit (Zendesk subject, ServiceNow short description)


class DeskDriver(Protocol):
    """What people and the ticketing system do to tickets, for demos and tests."""

    desk: str  # the desk's name in Deskgate's config
    system: str  # the simulator's name in ``Stack.sim``
    lifecycle_calls: ClassVar[
        dict[str, int]
    ]  # Deskgate's calls to the desk for one verified lifecycle
    statuses: ClassVar[dict[AgentStatus, str]]  # an agent's status as the desk writes it

    def create_ticket(self, name: str, email: str | None, subject: str) -> str: ...
    def is_driver_call(self, call: str) -> bool: ...
    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None: ...
    def set_push(self, enabled: bool) -> None: ...
    def notes(self, ticket_id: str) -> list[str]: ...
    def view(self, ticket_id: str) -> TicketView: ...
    def all_markers(self) -> dict[str, str | None]: ...
    def change_requester(self, ticket_id: str, name: str, email: str) -> None: ...
    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None: ...
    def change_contact(self, ticket_id: str, email: str) -> None: ...
    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None: ...
    def delete(self, ticket_id: str) -> None: ...


class ZendeskDriver:
    desk = "acme_zendesk"
    system = "zendesk"
    lifecycle_calls: ClassVar[dict[str, int]] = {
        # one read before gating (the requester's record sideloaded); the outcome is written
        # with Safe Update against the ticket the gate write returned, so it needs no read
        "GET /api/v2/tickets/<int:ticket_id>": 1,
        # how old the requester's e-mail is (a contact changed recently gets no link)
        "GET /api/v2/users/<int:user_id>/identities": 1,
        "PUT /api/v2/tickets/<int:ticket_id>": 2,  # the gate, the outcome
    }
    markers = frozenset(
        f"idv_{m}" for m in ("pending", "verified", "failed", "review", "expired", "error")
    )
    statuses: ClassVar[dict[AgentStatus, str]] = {
        "open": "open",
        "solved": "solved",
        "closed": "closed",
    }

    def __init__(self, stack: Stack) -> None:
        self.api = stack.zendesk
        self.sim = stack.sim["zendesk"]

    def is_driver_call(self, call: str) -> bool:
        """Creating tickets and users and adding tags are people's calls, not Deskgate's."""
        return call in (
            "POST /api/v2/tickets",
            "POST /api/v2/users",
            "PUT /api/v2/tickets/<int:ticket_id>/tags",
        )

    def create_ticket(self, name: str, email: str | None, subject: str) -> str:
        requester: dict[str, Any] = {"name": name}
        if email:
            requester["email"] = email
        body = {
            "ticket": {"subject": subject, "comment": {"body": subject}, "requester": requester}
        }
        resp = self.api.post("/tickets.json", json=body)
        resp.raise_for_status()
        return str(resp.json()["ticket"]["id"])

    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None:
        """What an agent or a macro does: add the trigger tag, leaving the other tags alone."""
        tag = next(t for t, r in TRIGGERS.items() if r == reason)
        self.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": [tag]}).raise_for_status()

    def set_push(self, enabled: bool) -> None:
        """Switch the trigger (the signed push) on or off; polling still finds flagged tickets."""
        self.sim.put("/_sandbox/triggers", json={"enabled": enabled}).raise_for_status()

    def raw(self, ticket_id: str) -> dict[str, Any]:
        resp = self.sim.get(f"/_sandbox/tickets/{ticket_id}")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def notes(self, ticket_id: str) -> list[str]:
        """Deskgate's internal notes, oldest first."""
        comments = self.raw(ticket_id).get("comments", [])
        return [c["body"] for c in comments if not c.get("public") and "Deskgate" in c["body"]]

    def view(self, ticket_id: str) -> TicketView:
        ticket = self.raw(ticket_id)["ticket"]
        tags = set(ticket["tags"])
        marker = next((t.removeprefix("idv_") for t in sorted(tags & self.markers)), None)
        status = ticket["status"]
        flagged = bool(tags & set(TRIGGERS))
        display = f"#{ticket['id']}"
        return TicketView(status, marker, flagged, status == "hold", display, ticket["subject"])

    def all_markers(self) -> dict[str, str | None]:
        """Deskgate's marker on every ticket of the desk, in one read."""
        tickets = self.sim.get("/_sandbox/tickets").json()["tickets"]
        return {
            str(t["id"]): next(
                (m.removeprefix("idv_") for m in sorted(set(t["tags"]) & self.markers)), None
            )
            for t in tickets
        }

    def change_requester(self, ticket_id: str, name: str, email: str) -> None:
        user = self.api.post("/users.json", json={"user": {"name": name, "email": email}})
        user.raise_for_status()
        requester = user.json()["user"]["id"]
        body = {"ticket": {"requester_id": requester}}
        self.api.put(f"/tickets/{ticket_id}.json", json=body).raise_for_status()

    def _other_agent(self) -> int:
        email = f"it.agent.{uuid.uuid4().hex[:8]}@acme.test"
        body = {"user": {"name": "IT Agent", "email": email, "role": "agent"}}
        made = self.api.post("/users.json", json=body)
        made.raise_for_status()
        return int(made.json()["user"]["id"])

    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None:
        """What anyone who may write on tickets can do in one update: add Deskgate's marker and
        the trigger tag, and an internal note in any words, by another agent, or (Zendesk's API
        lets a caller name a comment's author) in Deskgate's own user's name."""
        me = int(self.api.get("/users/me.json").json()["user"]["id"])
        author = me if as_deskgate else self._other_agent()
        body = {
            "ticket": {
                "comment": {"body": note, "public": False, "author_id": author},
                "additional_tags": [f"idv_{marker}", next(iter(TRIGGERS))],
            }
        }
        self.api.put(f"/tickets/{ticket_id}.json", json=body).raise_for_status()

    def change_contact(self, ticket_id: str, email: str) -> None:
        """An agent gives the requester a new e-mail and makes it the primary one."""
        requester = self.raw(ticket_id)["ticket"]["requester_id"]
        made = self.api.post(
            f"/users/{requester}/identities.json",
            json={"identity": {"type": "email", "value": email}},
        )
        made.raise_for_status()
        identity = made.json()["identity"]["id"]
        primary = self.api.put(f"/users/{requester}/identities/{identity}/make_primary.json")
        primary.raise_for_status()

    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None:
        """An agent's own edit, without Safe Update: retitle the ticket, solve or close it."""
        ticket: dict[str, Any] = {}
        if subject is not None:
            ticket["subject"] = subject
        if status is not None:
            ticket["status"] = self.statuses[status]
        self.api.put(f"/tickets/{ticket_id}.json", json={"ticket": ticket}).raise_for_status()

    def delete(self, ticket_id: str) -> None:
        self.api.delete(f"/tickets/{ticket_id}.json").raise_for_status()


class ServiceNowDriver:
    """Acts through the ``/api/now/v2/table`` alias, so the simulator's call counts tell the
    driver's calls (v2) from Deskgate's (``/api/now/table``)."""

    desk = "acme_servicenow"
    system = "servicenow"
    table = "incident"
    lifecycle_calls: ClassVar[dict[str, int]] = {
        # record + caller in one read: before the gate, then just before each write (no Safe
        # Update on the Table API, so the connector re-reads to refuse a changed record)
        "GET /api/now/table/<table>/<sys_id>": 3,
        # sys_audit: when the caller's e-mail last changed; with no change on record, whether
        # sys_user is audited at all
        "GET /api/now/table/<table>": 2,
        "PATCH /api/now/table/<table>/<sys_id>": 2,  # the gate, the outcome
    }
    statuses: ClassVar[dict[AgentStatus, str]] = {"open": "2", "solved": "6", "closed": "7"}

    def __init__(self, stack: Stack) -> None:
        self.api = pooled_client(
            base_url=f"{stack.servicenow_url}/api/now/v2/table",
            auth=(servicenow.ServiceNowSimConfig.username, servicenow.ServiceNowSimConfig.password),
            timeout=10,
        )
        self.sim = stack.sim["servicenow"]

    def is_driver_call(self, call: str) -> bool:
        return "/api/now/v2/" in call

    def _create(self, table: str, values: dict[str, Any]) -> str:
        resp = self.api.post(f"/{table}", json=values)
        resp.raise_for_status()
        return str(resp.json()["result"]["sys_id"])

    def _user(self, name: str, email: str | None) -> str:
        first, _, last = name.partition(" ")
        handle = (email or name).split("@")[0].lower().replace(" ", ".")
        return self._create(
            "sys_user",
            {"user_name": handle, "first_name": first, "last_name": last, "email": email or ""},
        )

    def create_ticket(self, name: str, email: str | None, subject: str) -> str:
        caller = self._user(name, email)
        return self._create(self.table, {"short_description": subject, "caller_id": caller})

    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None:
        """What an agent or a flow does: set the request field; the business rule pushes."""
        value = next(v for v, r in SN_TRIGGERS.items() if r == reason)
        self.api.patch(f"/{self.table}/{ticket_id}", json={SN_FLAG_FIELD: value}).raise_for_status()

    def set_push(self, enabled: bool) -> None:
        self.sim.put("/_sandbox/business_rule", json={"enabled": enabled}).raise_for_status()

    def raw(self, ticket_id: str) -> dict[str, Any]:
        resp = self.sim.get(f"/_sandbox/records/{self.table}/{ticket_id}")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def notes(self, ticket_id: str) -> list[str]:
        journal = self.raw(ticket_id).get("journal", [])
        entries = [j for j in journal if j.get("element") == "work_notes"]  # oldest first
        return [j["value"] for j in entries if "Deskgate" in j["value"]]

    def view(self, ticket_id: str) -> TicketView:
        record = self.raw(ticket_id)["record"]
        marker = record.get("u_idv_status") or None
        state = record["state"]
        flagged = record.get(SN_FLAG_FIELD) in SN_TRIGGERS
        subject = record.get("short_description", "")
        return TicketView(state, marker, flagged, state == "3", record["number"], subject)

    def all_markers(self) -> dict[str, str | None]:
        """Deskgate's marker on every ticket of the desk, in one read."""
        params = {"sysparm_fields": "sys_id,u_idv_status", "sysparm_limit": "10000"}
        resp = self.api.get(f"/{self.table}", params=params)
        resp.raise_for_status()
        return {r["sys_id"]: r.get("u_idv_status") or None for r in resp.json()["result"]}

    def change_requester(self, ticket_id: str, name: str, email: str) -> None:
        caller = self._user(name, email)
        self.api.patch(f"/{self.table}/{ticket_id}", json={"caller_id": caller}).raise_for_status()

    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None:
        """What an agent can do in one update: set Deskgate's status field and the flag, and
        add a work note in any words (as themselves: the Table API stamps the author)."""
        sim = servicenow.ServiceNowSimConfig
        who = (sim.username, sim.password) if as_deskgate else (
            sim.agent_username, sim.agent_password)  # fmt: skip
        values = {
            "work_notes": note,
            "u_idv_status": marker,
            SN_FLAG_FIELD: next(iter(SN_TRIGGERS)),
        }
        self.api.patch(f"/{self.table}/{ticket_id}", json=values, auth=who).raise_for_status()

    def change_contact(self, ticket_id: str, email: str) -> None:
        """An agent edits the caller's e-mail on their user record."""
        caller = self.raw(ticket_id)["record"]["caller_id"]
        self.api.patch(f"/sys_user/{caller}", json={"email": email}).raise_for_status()

    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None:
        """An agent's own edit: retitle the record, resolve or close it."""
        values: dict[str, Any] = {}
        if subject is not None:
            values["short_description"] = subject
        if status is not None:
            values["state"] = self.statuses[status]
        self.api.patch(f"/{self.table}/{ticket_id}", json=values).raise_for_status()

    def delete(self, ticket_id: str) -> None:
        self.api.delete(f"/{self.table}/{ticket_id}").raise_for_status()
