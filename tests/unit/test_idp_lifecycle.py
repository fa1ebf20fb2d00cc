"""The lifecycle with an identity provider (issue #18): the employee of record comes from the
IdP, and a verified result opens a short one-use grant an agent spends from the ticket. ``Flow``
driven directly as in ``test_flow.py`` (an in-memory desk, a scripted Incode, a real Redis), with
the Okta simulator as a real HTTP server behind the real Okta connector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis import Redis

from config.settings import ConfigError
from connectors.http import RateLimited, Retriable
from connectors.registry import SETTINGS as Settings
from connectors.registry import build_idp, check_reason_actions
from connectors.ticketing import Ticket
from sandbox import okta as sim
from sandbox.common import Server, serve
from tests.conftest import TEST_CHAIN, settings_data
from tests.unit.test_flow import DESK, MemoryDesk, Queue, ScriptedIncode
from worker import audit
from worker.audit.chain import verify
from worker.commands.report.aggregate import build
from worker.commands.report.formats import to_csv, to_table
from worker.idp.grants import Grants
from worker.idp.ledger import IdpLedger
from worker.lifecycle import State
from worker.lifecycle.flow import Flow
from worker.lifecycle.pace import Pace, PacedIdp
from worker.lifecycle.store import Store
from worker.runtime import Runtime

IDP = "acme_okta"
SIM = sim.OktaSimConfig()
DAY = 86400.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(sim.OktaSimConfig()))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.delete("/_sandbox/calls").raise_for_status()
    yield client
    client.close()


def make_user(api: httpx.Client, login: str = "jane@acme.test", **more: Any) -> str:
    more.setdefault("created", time.time() - 30 * DAY)  # contacts old enough to send a link to
    resp = api.post("/_sandbox/users", json={"login": login, **more})
    resp.raise_for_status()
    return str(resp.json()["id"])


def okta_log(api: httpx.Client, event_type: str) -> list[dict[str, Any]]:
    found = api.get("/_sandbox/log").json()["events"]
    return [e for e in found if e["eventType"] == event_type]


@dataclass
class ActingDesk(MemoryDesk):
    """``MemoryDesk`` with the action requests of idp-desk's interface."""

    asked_by: dict[str, str] = field(default_factory=dict)  # ticket id -> agent

    def ask(self, ticket_id: str, action: str, agent: str = "agent-7") -> None:
        self.tickets[ticket_id] = replace(self.tickets[ticket_id], action_request=action)
        self.asked_by[ticket_id] = agent

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        return self.asked_by.get(ticket.id)


@dataclass
class IdpWorld:
    flow: Flow
    desk: ActingDesk
    incode: ScriptedIncode
    store: Store
    clock: list[float]

    def note(self, ticket_id: str = "42") -> str:
        return self.desk.notes[ticket_id][-1][1]

    def events(self, name: str) -> list[dict[str, str]]:
        raw = self.store.redis.xrange(self.store.audit_key)
        return [e for _, e in raw if e["event"] == name]

    def verify(self, ticket_id: str = "42") -> str:
        """Flag the ticket, and have Incode say VERIFIED; returns the verification."""
        self.flow.start(DESK, ticket_id)
        v = self.store.open_for(DESK, ticket_id)
        assert v is not None and v.state == State.SENT, self.note(ticket_id)
        self.incode.decision = "verified"
        self.flow.check(v.id, "webhook")
        assert self.note(ticket_id).startswith("Identity VERIFIED")
        return v.id

    def press(self, action: str, ticket_id: str = "42", agent: str = "agent-7") -> str:
        self.desk.ask(ticket_id, action, agent)
        self.flow.start(DESK, ticket_id, "push")
        return self.note(ticket_id)


def idp_world(
    redis: Redis[str],
    server: Server,
    actions: list[str] | None = None,
    timeout: float = 5,
    token: str = SIM.api_token,
    **desk_config: Any,
) -> IdpWorld:
    data = settings_data()
    data["idps"] = {IDP: {"kind": "okta", "base_url": server.url, "api_token": token}}
    data["desks"]["acme_zendesk"].update({"idp": IDP, **desk_config})
    data["reasons"] = {"MFA reset": {"actions": actions or ["reset_mfa", "unlock"]}}
    settings = Settings(**data)
    check_reason_actions(settings)
    store = Store(redis, settings.key_prefix, 3600, chain=TEST_CHAIN)
    desk, incode, clock = ActingDesk(), ScriptedIncode(), [time.time()]
    okta = PacedIdp(build_idp(IDP, settings.idps[IDP], timeout), Pace(redis, settings.key_prefix))
    rt = Runtime(settings, redis, store, incode, {DESK: desk}, 0, {IDP: okta})  # type: ignore[arg-type]
    flow = Flow(rt, Queue(), lambda: clock[0])  # type: ignore[arg-type]
    return IdpWorld(flow, desk, incode, store, clock)


@pytest.fixture
def w(redis: Redis[str], server: Server, api: httpx.Client) -> IdpWorld:
    return idp_world(redis, server)


def ledger(w: IdpWorld, user_id: str) -> list[dict[str, Any]]:
    entries = IdpLedger(w.store.redis, w.store.prefix, 3600).entries(IDP, user_id, 0, 1e12)
    return [{"kind": e.kind, "state": e.state, "action": e.action} for e in entries]


# -- the employee of record comes from the IdP ------------------------------------------------


def test_the_link_goes_to_the_idps_contact_and_a_desk_that_disagrees_is_noted(
    redis: Redis[str], server: Server, api: httpx.Client
) -> None:
    w = idp_world(redis, server, idp_match="login")
    user = make_user(api, "jane@acme.test", email="jane.doe@corp.test")
    w.desk.add("42", email="jane@acme.test")
    w.flow.start(DESK, "42")
    assert w.incode.asked[0]["destination"] == "jane.doe@corp.test"  # the IdP's, not the desk's
    assert w.incode.asked[0]["login_hint"] == "jane@acme.test"
    gate = w.note()
    assert "differs from 'acme_okta''s record (j***@corp.test)" in gate
    assert "jane.doe@corp.test" not in gate and "jane@acme.test" not in gate
    v = w.store.open_for(DESK, "42")
    assert v is not None and (v.idp, v.idp_user) == (IDP, user)


def test_a_requester_the_idp_does_not_know_gets_no_link(w: IdpWorld, api: httpx.Client) -> None:
    w.desk.add("42", email="nobody@acme.test")
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert "has no user whose e-mail address is the requester's" in w.note()
    assert "nobody@acme.test" not in w.note()
    assert w.events("verification.error")[-1]["code"] == "idp_unknown"


def test_an_inactive_employee_gets_no_link(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api, status="DEPROVISIONED")
    w.desk.add("42")
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert "is not active (DEPROVISIONED)" in w.note()
    assert w.events("verification.error")[-1]["code"] == "idp_inactive"


def test_an_admin_is_refused_under_the_refuse_policy_and_the_ledger_says_refused(
    redis: Redis[str], server: Server, api: httpx.Client
) -> None:
    w = idp_world(redis, server, privileged_policy="refuse")
    user = make_user(api, roles=["SUPER_ADMIN"])
    w.desk.add("42")
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert "helpdesk resets of administrators go through another process" in w.note()
    assert w.events("verification.error")[-1]["code"] == "privileged_refused"
    assert ledger(w, user) == [{"kind": "verification", "state": "refused", "action": ""}]


def test_an_admin_is_verified_under_the_verify_policy_and_said_to_be_privileged(
    w: IdpWorld, api: httpx.Client
) -> None:
    make_user(api, roles=["SUPER_ADMIN"])
    w.desk.add("42")
    w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 1
    assert "holds admin rights in 'acme_okta' (SUPER_ADMIN)" in w.note()
    assert w.events("verification.sent")[-1]["privileged"] == "1"


def test_an_idp_refusing_deskgates_credentials_ends_in_a_note_naming_it_and_the_fix(
    redis: Redis[str], server: Server, api: httpx.Client
) -> None:
    w = idp_world(redis, server, token="not-the-token")
    make_user(api)
    w.desk.add("42")
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    note = w.note()
    assert "the identity provider 'acme_okta' refused Deskgate's request (HTTP 401)" in note
    assert "`deskgate doctor`" in note and "not-the-token" not in note
    assert w.events("verification.error")[-1]["code"] == "idp_refused"


def test_an_idp_that_is_down_in_the_start_step_is_retried(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api)
    w.desk.add("42")
    api.post("/_sandbox/faults", json={"path_prefix": "/api/v1/users", "status": 503})
    with pytest.raises(Retriable):
        w.flow.start(DESK, "42")
    w.flow.start(DESK, "42")  # the task's retry
    assert len(w.incode.asked) == 1


def test_an_idp_contact_the_log_cannot_date_gets_no_link(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api, created=time.time() - 400 * DAY)  # older than the System Log keeps
    w.desk.add("42")
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert w.events("verification.error")[-1]["code"] == "contact_age_unknown"


# -- grants -----------------------------------------------------------------------------------


def test_a_verified_result_grants_one_action_performed_once_by_deskgate(
    w: IdpWorld, api: httpx.Client
) -> None:
    user = make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    outcome = w.note()
    assert "Reset MFA" in outcome and "idv_do_reset_mfa" in outcome and "until" in outcome
    assert len(w.events("grant.opened")) == 1
    done = w.press("reset_mfa")
    assert "Reset MFA done in 'acme_okta'" in done and "asked by agent-7" in done
    assert w.desk.tickets["42"].action_request is None  # the request is cleared
    assert len(okta_log(api, "user.mfa.factor.reset_all")) == 1
    event = w.events("action.done")[-1]
    assert (event["agent"], event["idp_user"], event["action"]) == ("agent-7", user, "reset_mfa")
    assert event["idp_request"] and event["detail"] == "j***@acme.test"
    used = w.events("grant.used")[-1]  # appended with the grant's transition, in one step
    assert (used["agent"], used["idp_request"], used["idp_user"]) == (
        "agent-7",
        event["idp_request"],
        user,
    )
    assert ledger(w, user) == [  # what the bypass detector reads, exactly
        {"kind": "verification", "state": "verified", "action": ""},
        {"kind": "action", "state": "done", "action": "reset_mfa"},
    ]
    # A second press performs nothing.
    again = w.press("reset_mfa")
    assert "already been used" in again
    assert len(okta_log(api, "user.mfa.factor.reset_all")) == 1
    assert w.events("grant.refused")[-1]["code"] == "grant_used"


def test_a_password_reset_puts_no_secret_in_the_note_or_the_audit_trail(
    redis: Redis[str], server: Server, api: httpx.Client
) -> None:
    """Okta e-mails the reset link to the employee (sendEmail=true): no reset URL ever reaches
    Deskgate, and neither it, Deskgate's credential nor the full address is written anywhere."""
    w = idp_world(redis, server, actions=["reset_password"])
    user = make_user(api)
    w.desk.add("42")
    w.verify()
    done = w.press("reset_password")
    assert "Reset password done in 'acme_okta'" in done
    [mail] = api.get("/_sandbox/emails").json()["emails"]
    assert (mail["kind"], mail["user"]) == ("reset_password", user)  # the link went by e-mail
    written = "\n".join(
        [text for _, text in w.desk.notes["42"]]
        + [str(e) for _, e in redis.xrange(w.store.audit_key)]
    )
    for secret in (SIM.api_token, "reset_password/", "jane@acme.test"):
        assert secret not in written


def test_a_grant_lapses_after_grant_minutes(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    w.clock[0] += 15 * 60 + 1
    assert "the grant of the verified result ended at" in w.press("reset_mfa")
    assert okta_log(api, "user.mfa.factor.reset_all") == []
    assert w.events("grant.refused")[-1]["code"] == "grant_expired"
    assert w.flow.grants.expire_due(w.clock[0]) == 1
    assert [e["code"] for e in w.events("grant.expired")] == [""]


def test_the_sweep_expires_an_unused_grant_once(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    w.flow.sweep(w.clock[0] + 14 * 60)
    assert w.events("grant.expired") == []
    w.flow.sweep(w.clock[0] + 16 * 60)
    w.flow.sweep(w.clock[0] + 17 * 60)
    assert len(w.events("grant.expired")) == 1
    # The grant's events are links of the audit chain like every other: the trail verifies.
    checked = verify(w.store.redis, w.store.prefix, w.store.chain)
    assert checked.broken is None and checked.checked >= 4


def test_another_requester_cannot_use_the_grant(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], requester_id="someone-else")
    assert "not the employee who was verified" in w.press("reset_mfa")
    assert okta_log(api, "user.mfa.factor.reset_all") == []
    assert w.events("grant.refused")[-1]["code"] == "other_requester"


def test_a_requester_now_another_idp_user_cannot_use_the_grant(
    w: IdpWorld, api: httpx.Client
) -> None:
    make_user(api, factors=["push"])
    make_user(api, "boss@acme.test", factors=["push"])
    w.desk.add("42")
    w.verify()
    person = w.desk.people["u42"]
    w.desk.people["u42"] = replace(person, email="boss@acme.test")  # the profile edited after
    assert "no longer the 'acme_okta' user who was verified" in w.press("reset_mfa")
    assert okta_log(api, "user.mfa.factor.reset_all") == []
    assert w.events("grant.refused")[-1]["code"] == "other_idp_user"
    assert w.flow.grants.get(DESK, "42").state == "open"  # type: ignore[union-attr]


def test_an_action_the_reason_does_not_allow_is_refused(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api)
    w.desk.add("42")
    w.verify()
    note = w.press("revoke_sessions")
    assert "allows only: Reset MFA, Unlock account" in note
    assert okta_log(api, "user.session.clear") == []
    assert w.events("grant.refused")[-1]["code"] == "action_not_allowed"


def test_a_request_without_a_verified_result_does_nothing(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api)
    w.desk.add("42")
    assert "no verified result of this ticket allows" in w.press("reset_mfa")
    assert w.events("grant.refused")[-1]["code"] == "no_grant"
    assert w.incode.asked == []


def test_an_idp_that_is_down_keeps_the_grant_for_the_retry(w: IdpWorld, api: httpx.Client) -> None:
    user = make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    fault = {"path_prefix": f"/api/v1/users/{user}/lifecycle/reset_factors", "status": 503}
    api.post("/_sandbox/faults", json=fault).raise_for_status()
    w.desk.ask("42", "reset_mfa")
    with pytest.raises(Retriable):
        w.flow.start(DESK, "42", "push")
    assert w.flow.grants.get(DESK, "42").state == "open"  # type: ignore[union-attr]
    assert "Reset MFA done" in w.press("reset_mfa")  # the task's retry
    assert len(okta_log(api, "user.mfa.factor.reset_all")) == 1


def test_an_idp_429_is_rescheduled_after_its_wait_and_the_grant_kept(
    w: IdpWorld, api: httpx.Client
) -> None:
    make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    api.put("/_sandbox/settings", json={"rate_limits": {"user_write": 0}}).raise_for_status()
    w.desk.ask("42", "reset_mfa")
    with pytest.raises(RateLimited) as told:
        w.flow.start(DESK, "42", "push")
    assert told.value.retry_after > 0  # the task waits this long (worker.tasks._countdown)
    assert w.flow.grants.get(DESK, "42").state == "open"  # type: ignore[union-attr]
    assert okta_log(api, "user.mfa.factor.reset_all") == []
    # Every worker holds back until then: the next press does not reach Okta at all.
    api.delete("/_sandbox/calls").raise_for_status()
    with pytest.raises(RateLimited):
        w.flow.start(DESK, "42", "push")
    assert not [c for c in api.get("/_sandbox/calls").json()["calls"] if "/api/v1/" in c["path"]]


def test_an_idp_429_in_the_start_step_reschedules_it_and_sends_no_link(
    w: IdpWorld, api: httpx.Client
) -> None:
    make_user(api)
    w.desk.add("42")
    api.put("/_sandbox/settings", json={"rate_limits": {"user": 0}}).raise_for_status()
    with pytest.raises(RateLimited):
        w.flow.start(DESK, "42")
    assert w.incode.asked == []
    v = w.store.open_for(DESK, "42")
    assert v is not None and v.state == State.REQUESTED  # the task's retry takes it up again


def test_an_action_the_idp_may_have_done_unanswered_is_never_asked_again(
    redis: Redis[str], server: Server, api: httpx.Client
) -> None:
    w = idp_world(redis, server, timeout=1)
    user = make_user(api, factors=["push"])
    w.desk.add("42")
    w.verify()
    fault = {"path_prefix": f"/api/v1/users/{user}/lifecycle/reset_factors", "stage": "after",
             "delay": 1.5}  # fmt: skip
    api.post("/_sandbox/faults", json=fault).raise_for_status()
    note = w.press("reset_mfa")
    assert "did not answer in time: it may have been done" in note
    assert w.events("action.failed")[-1]["code"] == "idp_unanswered"
    assert ledger(w, user)[-1] == {"kind": "action", "state": "unanswered", "action": "reset_mfa"}
    assert "already been used" in w.press("reset_mfa")
    assert len(okta_log(api, "user.mfa.factor.reset_all")) == 1  # the held answer's, only


def test_the_report_counts_grants_and_actions_per_desk_and_reason(
    w: IdpWorld, api: httpx.Client
) -> None:
    make_user(api, factors=["push"])
    w.desk.add("42")
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    w.verify()
    w.press("reset_mfa")
    w.press("reset_mfa")
    report = build(audit.read(w.store.redis, w.store.prefix, since, until), since, until)
    s = report.groups[0].stats
    assert (s.grants_opened, s.grants_used, s.grants_refused, s.actions_done) == (1, 1, 1, 1)
    assert "acme_zendesk / MFA reset" in to_table(report, until).split("IdP actions")[1]
    assert to_csv(report).splitlines()[1].endswith(",1,1,1,0,1,0")


def test_two_presses_at_once_reserve_the_grant_once(w: IdpWorld, api: httpx.Client) -> None:
    make_user(api)
    w.desk.add("42")
    w.verify()
    grants = Grants(w.store)
    grant = grants.get(DESK, "42")
    assert grant is not None
    now = w.clock[0]
    first = grants.reserve(grant, "reset_mfa", grant.requester_id, "agent-7", now)
    second = grants.reserve(grant, "reset_mfa", grant.requester_id, "agent-8", now)
    assert (first, second) == ("ok", "grant_used")


# -- configuration ----------------------------------------------------------------------------


def test_a_desk_naming_an_unconfigured_idp_is_refused_naming_the_field() -> None:
    data = settings_data()
    data["desks"]["acme_zendesk"]["idp"] = "nope"
    with pytest.raises(ValueError, match=r"desks.acme_zendesk.idp names 'nope'"):
        Settings(**data)


def test_a_reason_action_the_desks_idp_cannot_perform_is_refused_naming_the_field() -> None:
    data = settings_data()
    data["idps"] = {"entra": {"kind": "entra", "tenant_id": "acme.test",
                              "client_id": "00000000-0000-0000-0000-000000000001",
                              "client_secret": "s" * 20}}  # fmt: skip
    data["desks"]["acme_zendesk"]["idp"] = "entra"
    data["reasons"] = {"MFA reset": {"actions": ["unlock"]}}
    with pytest.raises(ConfigError, match=r'reasons."MFA reset".actions: \'unlock\''):
        check_reason_actions(Settings(**data))
    data["reasons"] = {"MFA reset": {"actions": ["format_disk"]}}
    with pytest.raises(ConfigError, match="'format_disk' is not one of"):
        check_reason_actions(Settings(**data))


def test_grant_minutes_is_bounded() -> None:
    with pytest.raises(ValueError, match="grant_minutes"):
        Settings(**settings_data(grant_minutes=61))
    assert Settings(**settings_data()).grant_minutes == 15
