"""Bypass detection: admin actions in the IdP judged against Deskgate's ledger. The IdP is the
Okta simulator (a real HTTP server) read through the Okta connector; the ledger, the cursor, the
seen ids and the audit trail are a real Redis. Each test breaks when its rule is removed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from connectors.http import RateLimited
from connectors.identity_provider import (
    Action,
    ActionDone,
    ContactField,
    IdpEvent,
    IdpUser,
    Match,
)
from connectors.okta.config import OktaIdpConfig
from connectors.registry import SETTINGS, build_desk, build_idp
from sandbox import entra as entra_sim
from sandbox import okta as sim
from sandbox import zendesk
from sandbox.common import Server, serve
from sandbox.okta_org import admin_actor
from tests.conftest import TEST_CHAIN, settings_data
from worker import audit
from worker.idp.bypass import Detector, Rules, rules_for
from worker.idp.ledger import IdpLedger, LedgerEntry
from worker.idp.watch import Watcher
from worker.lifecycle.pace import Pace
from worker.lifecycle.store import Store

SIM = sim.OktaSimConfig()
PREFIX = "dgtest"


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


def settings(server: Server, **idp: Any) -> Any:
    data = settings_data()
    data["idps"] = {
        "okta": {
            "kind": "okta",
            "base_url": server.url,
            "client_id": SIM.client_id,
            "private_key": sim.PRIVATE_KEY_PEM,
            "key_id": sim.KEY_ID,
            **idp,
        }
    }
    return SETTINGS(**data)


class Deskgate:
    """What the worker builds for one IdP: a watcher (and a fresh one: a restart)."""

    def __init__(self, server: Server, redis: Redis[str], **idp: Any) -> None:
        self.settings = settings(server, **idp)
        config = self.settings.idps["okta"]
        assert isinstance(config, OktaIdpConfig)
        self.okta = build_idp("okta", config, timeout=5)
        self.redis = redis
        self.store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
        self.ledger = IdpLedger(redis, PREFIX, 86400 * 2)
        self.watcher = self.restart()

    def restart(self, rules: Rules | None = None, desks: dict[str, Any] | None = None) -> Watcher:
        detector = Detector(
            "okta",
            self.okta,
            self.store,
            self.ledger,
            rules or rules_for(self.settings, "okta"),
            desks or {},
        )
        return Watcher(detector, Pace(self.redis, PREFIX), time.time)

    def alerts(self) -> list[dict[str, Any]]:
        raw = self.redis.xrange(self.store.audit_key)
        return [e for e in (audit.event_of(f) for _, f in raw) if e["event"].startswith("idp.")]


@pytest.fixture
def gate(server: Server, api: httpx.Client, redis: Redis[str]) -> Iterator[Deskgate]:
    deskgate = Deskgate(server, redis)
    deskgate.watcher.poll()  # the first poll starts the log from now
    yield deskgate
    deskgate.okta.close()


def user(api: httpx.Client, login: str = "jane.doe@acme.test", **more: Any) -> str:
    resp = api.post("/_sandbox/users", json={"login": login, "email": login, **more})
    resp.raise_for_status()
    return str(resp.json()["id"])


def console(api: httpx.Client, uid: str, action: str = "reset_factors", **more: Any) -> None:
    api.post("/_sandbox/console", json={"user": uid, "action": action, **more}).raise_for_status()


def verification(state: str, at: float, reason: str = "MFA reset") -> LedgerEntry:
    return LedgerEntry(
        kind="verification", at=at, desk="zd", ticket="42", verification="v1", reason=reason,
        state=state,
    )  # fmt: skip


def test_a_console_reset_no_ticket_explains_is_a_medium_bypass(
    gate: Deskgate, api: httpx.Client
) -> None:
    uid = user(api)
    console(api, uid)
    assert gate.watcher.poll() is not None
    [alert] = gate.alerts()
    assert alert["event"] == "idp.bypass" and alert["severity"] == "medium"
    assert alert["code"] == "medium" and alert["action"] == "reset_mfa"
    assert alert["target"] == uid and alert["idp"] == "okta"
    assert alert["actor"] == admin_actor(SIM.console_admin)["id"]
    assert alert["destination"] == "j***@acme.test"  # masked: never the whole address
    assert "jane.doe" not in str(alert)


def test_a_console_reset_on_an_admin_is_high(gate: Deskgate, api: httpx.Client) -> None:
    uid = user(api, "root@acme.test", roles=["SUPER_ADMIN"])
    console(api, uid, "unlock")
    gate.watcher.poll()
    assert [(a["severity"], a["action"]) for a in gate.alerts()] == [("high", "unlock")]


def test_a_reset_after_a_failed_verification_is_high(gate: Deskgate, api: httpx.Client) -> None:
    uid = user(api)
    gate.ledger.record("okta", uid, verification("failed", time.time() - 3600))
    console(api, uid)
    gate.watcher.poll()
    [alert] = gate.alerts()
    assert alert["severity"] == "high" and "failed verification" in alert["detail"]


def test_a_verified_verification_within_the_window_explains_it(
    gate: Deskgate, api: httpx.Client
) -> None:
    explained, late = user(api), user(api, "late@acme.test")
    gate.ledger.record("okta", explained, verification("verified", time.time() - 60))
    # Verified, but longer ago than verified_window_minutes (30): explains nothing.
    gate.ledger.record("okta", late, verification("verified", time.time() - 31 * 60))
    console(api, explained)
    console(api, late)
    gate.watcher.poll()
    assert [(a["target"], a["severity"]) for a in gate.alerts()] == [(late, "medium")]


def test_a_verified_reason_explains_only_the_actions_it_allows(
    gate: Deskgate, api: httpx.Client
) -> None:
    uid = user(api)
    gate.ledger.record("okta", uid, verification("verified", time.time() - 60, "Unlock"))
    rules = rules_for(gate.settings, "okta")
    allow = {"Unlock": frozenset({"unlock"})}
    watcher = gate.restart(
        Rules(rules.own_actors, rules.break_glass, rules.verified_window, allow.get)
    )
    console(api, uid, "unlock")
    console(api, uid, "reset_factors")
    watcher.poll()
    assert [a["action"] for a in gate.alerts()] == ["reset_mfa"]


def test_an_action_the_ledger_records_explains_the_console_entry(
    gate: Deskgate, api: httpx.Client
) -> None:
    """A desk using grants: the agent reset the factors in the console after Deskgate granted
    it, and the lifecycle recorded the action (no request id: the agent's, not Deskgate's)."""
    uid = user(api)
    gate.ledger.record(
        "okta", uid,
        LedgerEntry(kind="action", at=time.time(), desk="zd", ticket="42", verification="v1",
                    state="done", action="reset_mfa"),
    )  # fmt: skip
    console(api, uid)
    console(api, uid, "reset_password")  # not the action recorded
    gate.watcher.poll()
    assert [a["action"] for a in gate.alerts()] == ["reset_password"]


def test_deskgates_own_reset_is_not_reported(gate: Deskgate, api: httpx.Client) -> None:
    uid = user(api)
    found = gate.okta.find_user("id", uid)
    assert found is not None
    done = gate.okta.perform(found, "reset_mfa")
    assert done.request_id
    gate.ledger.record(
        "okta", uid,
        LedgerEntry(kind="action", at=time.time(), desk="zd", ticket="42", verification="v1",
                    state="done", action="reset_mfa", request_id=done.request_id),
    )  # fmt: skip
    gate.watcher.poll()
    assert gate.alerts() == []


def test_a_console_reset_right_after_deskgates_own_is_still_a_bypass(
    gate: Deskgate, api: httpx.Client
) -> None:
    """Deskgate's action explains its own request, not an admin's a minute later: Okta names
    both calls, and they differ."""
    uid = user(api)
    found = gate.okta.find_user("id", uid)
    assert found is not None
    done = gate.okta.perform(found, "revoke_sessions")
    gate.ledger.record(
        "okta", uid,
        LedgerEntry(kind="action", at=time.time(), desk="zd", ticket="42", verification="v1",
                    state="done", action="revoke_sessions", request_id=done.request_id or ""),
    )  # fmt: skip
    console(api, uid, "clear_sessions")
    gate.watcher.poll()
    [alert] = gate.alerts()
    assert alert["actor"] == admin_actor(SIM.console_admin)["id"]
    assert alert["action"] == "revoke_sessions"


def test_a_call_with_deskgates_client_but_no_ledger_entry_is_a_bypass(
    gate: Deskgate, api: httpx.Client
) -> None:
    """Deskgate's credentials used by someone else: its client id alone proves nothing."""
    uid = user(api)
    found = gate.okta.find_user("id", uid)
    assert found is not None
    gate.okta.perform(found, "reset_mfa")
    gate.watcher.poll()
    assert {a["actor"] for a in gate.alerts()} == {SIM.client_id}


def test_a_self_service_reset_is_not_reported(gate: Deskgate, api: httpx.Client) -> None:
    uid = user(api)
    api.post(f"/_sandbox/users/{uid}/self_service", json={"action": "reset_password"})
    gate.watcher.poll()
    assert gate.alerts() == []


def test_a_break_glass_actor_is_reported_as_info_not_as_a_bypass(
    server: Server, api: httpx.Client, redis: Redis[str]
) -> None:
    glass = admin_actor("breakglass@acme.test")["id"]
    deskgate = Deskgate(server, redis, break_glass_actors=[glass])
    deskgate.watcher.poll()
    uid = user(api)
    console(api, uid, admin="breakglass@acme.test")
    deskgate.watcher.poll()
    [alert] = deskgate.alerts()
    assert alert["event"] == "idp.break_glass" and alert["severity"] == "info"
    assert alert["actor"] == glass
    deskgate.okta.close()


def test_a_restart_resumes_at_the_cursor_without_a_gap_or_a_double(
    gate: Deskgate, api: httpx.Client
) -> None:
    first, second = user(api), user(api, "second@acme.test")
    console(api, first)
    gate.watcher.poll()
    console(api, second)  # while Deskgate is down
    gate.restart().poll()
    gate.restart().poll()
    assert [a["target"] for a in gate.alerts()] == [first, second]


def test_events_read_again_after_a_lost_cursor_are_not_reported_twice(
    gate: Deskgate, api: httpx.Client
) -> None:
    """A poll that handled its events but died before saving the cursor reads them again."""
    before = gate.redis.get(gate.watcher.cursor_key)
    uid = user(api)
    console(api, uid)
    gate.watcher.poll()
    assert before is not None
    gate.redis.set(gate.watcher.cursor_key, before)
    gate.restart().poll()
    assert len(gate.alerts()) == 1


def test_a_poll_with_nothing_new_makes_one_idp_call(gate: Deskgate, api: httpx.Client) -> None:
    api.delete("/_sandbox/calls").raise_for_status()
    for _ in range(3):
        gate.watcher.poll()
    calls = [c["route"] for c in api.get("/_sandbox/calls").json()["calls"]]
    assert [r for r in calls if r.startswith("/api/")] == ["/api/v1/logs"] * 3


def test_two_workers_never_read_one_log_at_once(gate: Deskgate) -> None:
    with gate.store.lock("idplog:okta", 60) as held:
        assert held
        assert gate.restart().poll() is None


def test_a_rate_limited_log_holds_every_worker_back(gate: Deskgate, api: httpx.Client) -> None:
    api.put("/_sandbox/settings", json={"rate_limits": {"logs": 0}}).raise_for_status()
    with pytest.raises(RateLimited):
        gate.watcher.poll()  # Okta's 429 on the System Log
    assert Pace(gate.redis, PREFIX).remaining("idp:okta") > 0
    api.delete("/_sandbox/calls").raise_for_status()
    with pytest.raises(RateLimited):
        gate.restart().poll()  # another worker
    assert api.get("/_sandbox/calls").json()["calls"] == []  # not even asked


class ReplayingLog:
    """An IdP whose log hands back overlapping windows of the same entries (as Entra's
    overlap does), for the storm: the watcher and Redis are real, the IdP is not needed."""

    name = "okta"
    actions: frozenset[Action] = frozenset()

    def __init__(self, events: list[IdpEvent], windows: list[tuple[int, int]]) -> None:
        self.events, self.windows = events, windows

    def read_log(self, cursor: str | None) -> tuple[list[IdpEvent], str]:
        start, end = self.windows[int(cursor or 0)]
        return self.events[start:end], str(int(cursor or 0) + 1)

    def find_user(self, match: Match, value: str) -> IdpUser | None:
        return None

    def changed_at(self, user: IdpUser, field: ContactField) -> float | None:
        return None

    def perform(self, user: IdpUser, action: Action) -> ActionDone:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_a_storm_of_ten_thousand_actions_raises_one_alert_each_and_repeats_none(
    redis: Redis[str], server: Server
) -> None:
    now = time.time()
    events = [
        IdpEvent(
            id=f"evt-{n}",
            at=now - 10,
            kind="reset_mfa",
            raw_type="user.mfa.factor.reset_all",
            target_id=f"00u{n % 50}",
            actor_id="00uadmin",
            actor_is_app=False,
            self_service=False,
            request_id=f"req-{n}",
        )
        for n in range(10_000)
    ]
    log = ReplayingLog(events, [(0, 6000), (4000, 10_000), (0, 10_000)])
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    detector = Detector(
        "okta", log, store, IdpLedger(redis, PREFIX, 3600), rules_for(settings(server), "okta"), {}
    )
    watcher = Watcher(detector, Pace(redis, PREFIX), time.time)
    raised = [watcher.poll() for _ in range(3)]
    assert [r.alerts for r in raised if r] == [6000, 4000, 0]
    ids = [f["idp_event"] for _, f in redis.xrange(store.audit_key)]
    assert len(ids) == 10_000 and len(set(ids)) == 10_000


ZD = zendesk.ZendeskSimConfig(triggers_enabled=False, user_age_days=30)


@pytest.fixture(scope="module")
def zendesk_server() -> Iterator[Server]:
    running = serve(zendesk.create_app(ZD))
    yield running
    running.stop()


def test_the_users_open_ticket_gets_a_note_and_a_solved_one_none(
    gate: Deskgate, api: httpx.Client, zendesk_server: Server
) -> None:
    httpx.post(f"{zendesk_server.url}/_sandbox/reset").raise_for_status()
    zd = httpx.Client(
        base_url=f"{zendesk_server.url}/api/v2", auth=(f"{ZD.email}/token", ZD.api_token)
    )
    data = settings_data()
    data["desks"]["acme_zendesk"].update(
        base_url=zendesk_server.url, email=ZD.email, api_token=ZD.api_token
    )
    desk = build_desk("acme_zendesk", SETTINGS(**data).desks["acme_zendesk"], 5.0)

    def ticket(status: str) -> str:
        body = {"ticket": {"subject": "MFA", "comment": {"body": "help"}, "tags": ["idv_failed"],
                           "requester": {"name": "Jane", "email": "jane@acme.test"},
                           "status": status}}  # fmt: skip
        return str(zd.post("/tickets.json", json=body).json()["ticket"]["id"])

    def comments(ticket_id: str) -> list[str]:
        got = zd.get(f"/tickets/{ticket_id}/comments.json").json()["comments"]
        return [str(c["body"]) for c in got if not c.get("public", True)]

    open_user, closed_user = user(api), user(api, "closed@acme.test")
    open_ticket, closed_ticket = ticket("open"), ticket("solved")
    for uid, ticket_id in ((open_user, open_ticket), (closed_user, closed_ticket)):
        entry = verification("failed", time.time() - 60)
        gate.ledger.record("okta", uid, LedgerEntry(**{**entry.__dict__, "desk": "acme_zendesk",
                                                       "ticket": ticket_id}))  # fmt: skip
        console(api, uid)
    gate.restart(desks={"acme_zendesk": desk}).poll()
    [note] = comments(open_ticket)
    assert "not explained by a verified ticket" in note and "high" in note
    assert "jane.doe" not in note  # the note names no address
    assert comments(closed_ticket) == []
    noted = {a["target"]: (a["desk"], a["ticket"]) for a in gate.alerts()}
    assert noted == {open_user: ("acme_zendesk", open_ticket), closed_user: ("", "")}
    desk.close()
    zd.close()


def test_entras_overlapping_reads_report_each_portal_action_once(redis: Redis[str]) -> None:
    """The same rules on Entra, whose every read reaches back ``log_overlap_seconds`` and so
    returns entries already handled."""
    config = entra_sim.EntraSimConfig(audit_delay_seconds=0)
    running = serve(entra_sim.create_app(config))
    control = httpx.Client(base_url=running.url, timeout=10)
    block = {
        "kind": "entra", "tenant_id": config.tenant_id, "client_id": config.client_id,
        "client_secret": config.client_secret, "graph_url": running.url,
        "login_url": running.url,
    }  # fmt: skip
    settings = SETTINGS(**settings_data(idps={"entra": block}))
    idp = build_idp("entra", settings.idps["entra"], timeout=5)
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    detector = Detector(
        "entra", idp, store, IdpLedger(redis, PREFIX, 86400), rules_for(settings, "entra"), {}
    )
    watcher = Watcher(detector, Pace(redis, PREFIX), time.time)

    def person(name: str) -> str:
        body = {"upn": f"{name}@acme.test", "methods": [{"type": "microsoftAuthenticator"}]}
        return str(control.post("/_sandbox/users", json=body).json()["id"])

    try:
        admin, target, itself = person("lead"), person("jane"), person("sam")
        watcher.poll()  # the cursor
        method = control.get(f"/_sandbox/users/{target}").json()["methods"][-1]["id"]
        portal = {"admin": admin, "user": target, "action": "delete_method", "method": method}
        control.post("/_sandbox/portal", json=portal).raise_for_status()
        body = {"user": itself, "action": "reset_password"}
        control.post("/_sandbox/self_service", json=body).raise_for_status()
        time.sleep(1.1)  # the cursor is whole seconds
        first = watcher.poll()
        again = watcher.poll()
        assert first is not None and again is not None
        assert (first.alerts, again.read, again.new) == (1, first.read, 0)
        alerts = [f for _, f in redis.xrange(store.audit_key) if f["event"] == "idp.bypass"]
        assert [(a["target"], a["actor"], a["action"]) for a in alerts] == [
            (target, admin, "reset_mfa")
        ]
    finally:
        idp.close()
        control.close()
        running.stop()
