"""The demo's identity-provider part (docs/idp.md): its own stack, whose Zendesk desk takes its
employees from the Okta simulator and whose ServiceNow desk from the Entra simulator, both with
``privileged_policy = "refuse"``. The demo's first part runs with no IdP at all, so its figures
stay those of a desk without one.

Per IdP: an employee passes, an agent asks for "Reset MFA", Deskgate performs it once (the IdP
simulator's own log shows it, by Deskgate's app) and says so on the ticket; a second press is
refused. On the Okta desk an action asked on a ticket nobody verified is refused with a note.
An administrator gets no link on either desk."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sandbox.driver import DeskDriver
from sandbox.entra import EntraSimConfig
from sandbox.okta_org import KEY_ID, PRIVATE_KEY_PEM, OktaSimConfig
from sandbox.servicenow_driver import DESK as SERVICENOW_DESK
from sandbox.stack import Stack, StackOptions, wait_for
from sandbox.zendesk_driver import DESK as ZENDESK_DESK

WAIT = 30.0
REASON = "MFA reset"
# Each IdP-backed desk: its desk simulator, its IdP, and the IdP's id of Deskgate's own app.
IDP_DESKS = {
    ZENDESK_DESK: ("zendesk", "acme_okta", OktaSimConfig.client_id),
    SERVICENOW_DESK: ("servicenow", "acme_entra", EntraSimConfig.client_id),
}


def idp_options(redis_url: str, prefix: str, queue: str) -> StackOptions:
    env = {
        # Okta as the API Services app (private_key_jwt), so its System Log names Deskgate's
        # app as the actor; the stack's API token is taken away in ``run``.
        "DESKGATE_IDPS__ACME_OKTA__CLIENT_ID": OktaSimConfig.client_id,
        "DESKGATE_IDPS__ACME_OKTA__KEY_ID": KEY_ID,
        "DESKGATE_IDPS__ACME_OKTA__PRIVATE_KEY": PRIVATE_KEY_PEM,
    }
    for desk, (_, idp, _) in IDP_DESKS.items():
        env[f"DESKGATE_DESKS__{desk.upper()}__IDP"] = idp
        env[f"DESKGATE_DESKS__{desk.upper()}__PRIVILEGED_POLICY"] = "refuse"
    return StackOptions(
        redis_url=redis_url, key_prefix=prefix, queue=queue, poll_interval_seconds=5,
        log_format="json", extra_env=env,
        extra_config=f'\n[reasons."{REASON}"]\nactions = ["reset_mfa"]\n',
    )  # fmt: skip


class People:
    """Users of each IdP simulator, made through its control API: 10 days old (older than any
    contact-age rule), Okta's with a push factor, Entra's with two sign-in methods."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def add(self, kind: str, email: str, admin: bool = False) -> str:
        created = time.time() - 10 * 86400
        if kind == "zendesk":
            body: dict[str, Any] = {"login": email, "email": email, "created": created}
            body["roles"] = ["USER_ADMIN"] if admin else []
            made = self.stack.sim["okta"].post("/_sandbox/users", json=body)
        else:
            body = {
                "upn": email, "mail": email, "created_days_ago": 10,
                "roles": ["User Administrator"] if admin else [],
                "methods": [
                    {"type": "microsoftAuthenticator", "displayName": "Phone", "default": True},
                    {"type": "phone", "phoneNumber": "+1 2065550100"},
                ],
            }  # fmt: skip
            made = self.stack.sim["entra"].post("/_sandbox/users", json=body)
        made.raise_for_status()
        user_id: str = made.json()["id"]
        return user_id

    def resets_of(self, kind: str, user_id: str) -> list[str]:
        """Who reset ``user_id``'s MFA, by the IdP's own log (every entry, visible yet or not):
        the id of the app that did it, else the person's. Okta logs one
        ``user.mfa.factor.reset_all``; Entra one "deleted security info" per method deleted."""
        if kind == "zendesk":
            events = self.stack.sim["okta"].get("/_sandbox/log").json()["events"]
            return [
                e["actor"]["id"]
                for e in events
                if e["eventType"] == "user.mfa.factor.reset_all"
                and any(t.get("id") == user_id for t in e.get("target") or [])
            ]
        audits = self.stack.sim["entra"].get("/_sandbox/audits").json()["audits"]
        return [
            str((a["initiatedBy"].get("app") or {}).get("appId") or a["initiatedBy"]["user"]["id"])
            for a in audits
            if a["activityDisplayName"].endswith("deleted security info")
            and any(t["id"] == user_id for t in a["targetResources"])
        ]


def _note_with(desk: DeskDriver, ticket: str, text: str) -> Callable[[], bool]:
    return lambda: any(text in note for note in desk.notes(ticket))


def _show(driver: DeskDriver, ticket: str, who: str, what: str) -> None:
    """The ticket's timeline, as the demo's first part prints it."""
    print(f"{driver.desk:<16} {who} ({what})")
    for note in driver.notes(ticket):
        print(f"    note: {note.splitlines()[0]}")
    print(f"    marker: {driver.view(ticket).marker}")


def _play_reset(stack: Stack, people: People, desk: str, failures: list[str]) -> None:
    kind, idp, own_app = IDP_DESKS[desk]
    driver = stack.driver(kind)
    email = f"lena.hoff@{idp.removeprefix('acme_')}.acme.test"
    user_id = people.add(kind, email)
    stack.enrol(email)
    ticket = driver.create_ticket("Lena Hoff", email, "Lost my phone, please reset my MFA")
    driver.flag(ticket, REASON)
    wait_for(lambda: stack.sessions(email), WAIT, f"the link to {idp}'s employee")
    stack.complete(stack.sessions(email)[0]["interviewId"], "pass")
    wait_for(lambda: driver.view(ticket).marker == "verified", WAIT, "the verified note")
    if not _note_with(driver, ticket, f"may be done by Deskgate in '{idp}', once")():
        failures.append(f"{desk} #{ticket}: the verified note does not offer the reset")
    driver.ask_action(ticket, "reset_mfa")  # the agent's "Deskgate: reset MFA"
    wait_for(_note_with(driver, ticket, f"Reset MFA done in '{idp}'"), WAIT, "the reset note")
    driver.ask_action(ticket, "reset_mfa")  # a second press: the grant is spent
    wait_for(_note_with(driver, ticket, "has already been used"), WAIT, "the refusal note")
    resets = people.resets_of(kind, user_id)
    expected = [own_app] * (1 if kind == "zendesk" else 2)  # Entra: the two methods
    _show(driver, ticket, "Lena Hoff", f"passes; an agent asks twice for an MFA reset in {idp}")
    if resets != expected:
        failures.append(f"{idp}'s log of Lena Hoff's MFA resets: {resets}, expected {expected}")


def _play_refusals(stack: Stack, people: People, desk: str, failures: list[str]) -> None:
    kind, idp, _ = IDP_DESKS[desk]
    driver = stack.driver(kind)
    admin = f"olaf.admin@{idp.removeprefix('acme_')}.acme.test"
    admin_id = people.add(kind, admin, admin=True)
    stack.enrol(admin)
    ticket = driver.create_ticket("Olaf Admin", admin, "Lost my phone, please reset my MFA")
    driver.flag(ticket, REASON)
    wait_for(_note_with(driver, ticket, "another process"), WAIT, "the privileged note")
    _show(driver, ticket, "Olaf Admin", f"an administrator in {idp}: no link")
    if stack.sessions(admin) or people.resets_of(kind, admin_id):
        failures.append(f"{desk} #{ticket}: an administrator got a link or an action")
    if kind != "zendesk":
        return
    # An agent asks on a ticket nobody verified: nothing happens but a note.
    email = f"mia.stone@{idp.removeprefix('acme_')}.acme.test"
    user_id = people.add(kind, email)
    ticket = driver.create_ticket("Mia Stone", email, "Please reset my MFA")
    driver.ask_action(ticket, "reset_mfa")
    wait_for(_note_with(driver, ticket, "no verified result"), WAIT, "the no-grant note")
    _show(driver, ticket, "Mia Stone", "an MFA reset asked, never verified")
    if people.resets_of(kind, user_id):
        failures.append(f"{idp} acted on Mia Stone without a verified result")


# What ``deskgate report`` must count on each desk: Lena verified (one grant, used once, one
# reset done, her second press refused); Olaf refused (an error); Mia's request refused.
EXPECTED = {
    ZENDESK_DESK: Counter(verified=1, grants_opened=1, grants_used=1, grants_refused=2,
                          actions_done=1),
    SERVICENOW_DESK: Counter(verified=1, grants_opened=1, grants_used=1, grants_refused=1,
                             actions_done=1),
}  # fmt: skip


def _report(stack: Stack, since: str) -> list[str]:
    done = stack.command("report", "--since", since, "--format", "json")
    if done.returncode != 0:
        return [f"deskgate report (IdP desks) failed: {done.stderr.strip()}"]
    counted: dict[str, Counter[str]] = {}
    for group in json.loads(done.stdout)["groups"]:
        tally = counted.setdefault(group["desk"], Counter())
        tally["verified"] += group["verified"]
        tally.update({f"grants_{k}": v for k, v in group["grants"].items()})
        tally.update({f"actions_{k}": v for k, v in group["actions"].items()})
    return [
        f"report for {desk} (IdP): {dict(+counted.get(desk, Counter()))}, expected {dict(want)}"
        for desk, want in EXPECTED.items()
        if +counted.get(desk, Counter()) != want
    ]


def run(redis_url: str, prefix: str, queue: str, since: str) -> list[str]:
    """The IdP part, on its own stack; what ended otherwise than it should, as failures."""
    stack = Stack(idp_options(redis_url, prefix, queue))
    stack.env.pop("DESKGATE_IDPS__ACME_OKTA__API_TOKEN")  # exactly one credential: the app's
    failures: list[str] = []
    print("\nIdentity providers: Zendesk desk -> Okta, ServiceNow desk -> Entra ID")
    with stack:
        people = People(stack)
        for desk in IDP_DESKS:
            _play_reset(stack, people, desk, failures)
            _play_refusals(stack, people, desk, failures)
        failures += _report(stack, since)
    return failures
