"""The demo's second part: people going around the gate in the IdPs' consoles (docs/bypass.md).

On each IdP simulator in the stack (Okta, Entra ID), an admin resets an admin's MFA with no
ticket (expected: a high bypass), resets the MFA of an employee whose verification just failed
(high), and an employee resets their own password (nothing). On Okta, Deskgate's own reset
(nothing): the lifecycle's act step is not wired yet, so the demo calls Okta as Deskgate does and
writes the ledger entry the lifecycle will write; the failed verification is likewise written to
the ledger directly. Each case must end as expected, or the demo fails.

Entra's audit log is minutes late in the real world (the simulator's default delay is 120 s);
the demo shortens it to ``ENTRA_DELAY_SECONDS`` so it finishes in under a minute.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from sandbox.stack import Stack, wait_for
from worker import audit
from worker.commands.report.aggregate import parse_time
from worker.idp.ledger import EntryKind, IdpLedger, LedgerEntry

OKTA, ENTRA = "acme_okta", "acme_entra"
ENTRA_DELAY_SECONDS = 10.0
POLL_SECONDS = 5  # the demo's idp_poll_interval_seconds


@dataclass
class BypassCase:
    idp: str
    what: str
    expect: str | None  # the bypass's severity, or None: nothing must be raised
    target: str = ""
    at: float = 0.0  # when the admin (or the user, or Deskgate) acted
    raised: str | None = None  # the severity Deskgate raised
    seconds: float | None = None  # action -> alert


class Consoles:
    """People acting in the IdP simulators, and the ledger the lifecycle writes."""

    def __init__(self, stack: Stack) -> None:
        self.okta, self.entra = stack.sim["okta"], stack.sim["entra"]
        self.okta_token = stack.app_configs["okta"].api_token
        self.redis: Redis[str] = Redis.from_url(stack.options.redis_url, decode_responses=True)
        self.prefix = stack.options.key_prefix
        self.ledger = IdpLedger(self.redis, self.prefix, 30 * 86400)
        self.entra_admin = self._entra_user("helpdesk.lead")

    def okta_user(self, name: str, admin: bool = False) -> str:
        body = {"login": f"{name}@acme.test", "email": f"{name}@acme.test"}
        resp = self.okta.post("/_sandbox/users", json={**body, "roles": ["SUPER_ADMIN"] * admin})
        resp.raise_for_status()
        return str(resp.json()["id"])

    def _entra_user(self, name: str, admin: bool = False) -> str:
        body: dict[str, Any] = {
            "upn": f"{name}.{uuid.uuid4().hex[:6]}@acme.test",
            "methods": [{"type": "microsoftAuthenticator", "default": True}],
            "roles": ["Global Administrator"] * admin,
        }
        resp = self.entra.post("/_sandbox/users", json=body)
        resp.raise_for_status()
        return str(resp.json()["id"])

    def entra_user(self, name: str, admin: bool = False) -> str:
        return self._entra_user(name, admin)

    def okta_console_reset(self, user: str) -> None:
        body = {"user": user, "action": "reset_factors"}
        self.okta.post("/_sandbox/console", json=body).raise_for_status()

    def okta_self_service(self, user: str) -> None:
        body = {"action": "reset_password"}
        self.okta.post(f"/_sandbox/users/{user}/self_service", json=body).raise_for_status()

    def okta_as_deskgate(self, user: str) -> None:
        """Deskgate's reset through Okta's API, recorded in the ledger as the act step will."""
        resp = self.okta.post(
            f"/api/v1/users/{user}/lifecycle/reset_factors",
            headers={"Authorization": f"SSWS {self.okta_token}", "Content-Length": "0"},
        )
        resp.raise_for_status()
        self.record(
            OKTA,
            user,
            "action",
            action="reset_mfa",
            state="done",
            request_id=resp.headers["X-Okta-Request-Id"],
        )

    def entra_portal_reset(self, user: str) -> None:
        method = next(
            m["id"]
            for m in self.entra.get(f"/_sandbox/users/{user}").json()["methods"]
            if "password" not in m["@odata.type"]
        )
        body = {"admin": self.entra_admin, "user": user, "action": "delete_method"}
        self.entra.post("/_sandbox/portal", json={**body, "method": method}).raise_for_status()

    def entra_self_service(self, user: str) -> None:
        body = {"user": user, "action": "reset_password"}
        self.entra.post("/_sandbox/self_service", json=body).raise_for_status()

    def record(self, idp: str, user: str, kind: EntryKind, **fields: str) -> None:
        entry = LedgerEntry(
            kind=kind,
            at=time.time(),
            desk="demo",
            ticket="1",
            verification=uuid.uuid4().hex,
            reason="MFA reset",
            **fields,
        )
        self.ledger.record(idp, user, entry)

    def alerts(self) -> dict[str, dict[str, Any]]:
        """The idp.* audit events so far, by target user."""
        raw = self.redis.xrange(audit.stream_key(self.prefix))
        events = (audit.event_of(fields) for _, fields in raw)
        return {e["target"]: e for e in events if e["event"].startswith("idp.")}

    def close(self) -> None:
        self.redis.close()


def _has_cursor(consoles: Consoles, idp: str) -> Callable[[], bool]:
    key = f"{consoles.prefix}:idplog:{idp}:cursor"
    return lambda: bool(consoles.redis.exists(key))


def _act(consoles: Consoles) -> list[BypassCase]:
    c = consoles
    cases: list[BypassCase] = []

    def case(idp: str, what: str, expect: str | None, target: str, act: Any) -> None:
        found = BypassCase(idp, what, expect, target, time.time())
        act(target)
        cases.append(found)

    case(
        OKTA,
        "admin console: an admin's MFA reset, no ticket",
        "high",
        c.okta_user("root.admin", admin=True),
        c.okta_console_reset,
    )
    ben = c.okta_user("ben.failed")
    c.record(OKTA, ben, "verification", state="failed")
    case(
        OKTA,
        "admin console: MFA reset after a failed verification",
        "high",
        ben,
        c.okta_console_reset,
    )
    case(OKTA, "self-service password reset", None, c.okta_user("sue.self"), c.okta_self_service)
    case(
        OKTA,
        "Deskgate's own reset, recorded in the ledger",
        None,
        c.okta_user("dee.deskgate"),
        c.okta_as_deskgate,
    )
    case(
        ENTRA,
        "portal: an admin's security info deleted, no ticket",
        "high",
        c.entra_user("root.admin", admin=True),
        c.entra_portal_reset,
    )
    eve = c.entra_user("eve.failed")
    c.record(ENTRA, eve, "verification", state="failed")
    case(
        ENTRA,
        "portal: security info deleted after a failed verification",
        "high",
        eve,
        c.entra_portal_reset,
    )
    case(ENTRA, "self-service password reset", None, c.entra_user("sam.self"), c.entra_self_service)
    return cases


def run(stack: Stack) -> list[str]:
    """Play the bypass cases, print what Deskgate raised, and return what went otherwise."""
    stack.sim["entra"].put("/_sandbox/audit_delay", json={"seconds": ENTRA_DELAY_SECONDS})
    consoles = Consoles(stack)
    try:
        # The watchers read forward from their first poll: act only once each has a cursor.
        for idp in (OKTA, ENTRA):
            wait_for(_has_cursor(consoles, idp), 3 * POLL_SECONDS + 30, f"{idp}'s first poll")
        cases = _act(consoles)
        expected = {c.target for c in cases if c.expect}
        wait_for(
            lambda: expected <= set(consoles.alerts()),
            ENTRA_DELAY_SECONDS + 3 * POLL_SECONDS + 30,
            "the bypass alerts",
        )
        time.sleep(2 * POLL_SECONDS)  # one more read of each log: nothing else may come
        alerts = consoles.alerts()
    finally:
        consoles.close()
    failures = []
    print("\nGoing around the gate (admin actions in the IdPs, judged against Deskgate's record):")
    for c in cases:
        alert = alerts.get(c.target)
        c.raised = alert["severity"] if alert else None
        if alert:
            raised_at = parse_time(alert["time"])
            c.seconds = raised_at.timestamp() - c.at if raised_at else None
        took = f" after {c.seconds:.1f} s" if c.seconds is not None else ""
        said = f"idp.bypass {c.raised}{took}" if c.raised else "nothing raised"
        print(f"  {c.idp:<11} {c.what:<58} {said}")
        if c.raised != c.expect:
            failures.append(f"{c.idp} {c.what}: expected {c.expect or 'nothing'}, got {said}")
    return failures
