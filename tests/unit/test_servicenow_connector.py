"""The ServiceNow connector against the ServiceNow simulator (a real HTTP server)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from flask import Flask

from connectors.http import AuthFailed, Conflict, Fatal, NotFound, RateLimited
from connectors.registry import SETTINGS
from connectors.servicenow import connector as servicenow
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.push import pushed_ticket_ids, sign, verify_push
from connectors.ticketing import PushAuth, Ticket
from sandbox import servicenow as sim
from sandbox.common import Server, serve
from tests.conftest import settings_data

SIM = sim.set_up(sim.ServiceNowSimConfig())  # as `deskgate setup` leaves it


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, auth=(SIM.username, SIM.password), timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.delete("/_sandbox/calls").raise_for_status()
    yield client
    client.close()


def desk_config(server: Server, **change: Any) -> ServiceNowDeskConfig:
    data = settings_data()
    data["desks"] = {
        "sn": {
            "kind": "servicenow",
            "base_url": server.url,
            "username": SIM.username,
            "password": SIM.password,
            "oauth_client_id": SIM.oauth_client_id,
            "oauth_client_secret": SIM.oauth_client_secret,
            "api_user_name": SIM.username,
            **change,
        }
    }
    config = SETTINGS(**data).desks["sn"]
    assert isinstance(config, ServiceNowDeskConfig)
    return config


def incident(api: httpx.Client, **values: Any) -> str:
    user = api.post(
        "/api/now/table/sys_user",
        json={"user_name": "jdoe", "email": "jane.doe@acme.test", "employee_number": "E7"},
    ).json()["result"]["sys_id"]
    body = {"short_description": "MFA reset", "caller_id": user, **values}
    return str(api.post("/api/now/table/incident", json=body).json()["result"]["sys_id"])


def test_a_record_and_its_caller_in_one_read(server: Server, api: httpx.Client) -> None:
    sys_id = incident(api, u_idv_required="true")
    api.delete("/_sandbox/calls").raise_for_status()
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None and ticket.display_id.startswith("INC")
    assert ticket.reason == "identity verification" and ticket.marker is None and ticket.active
    assert ticket.requester is not None
    assert ticket.requester.email == "jane.doe@acme.test"
    assert ticket.requester.external_id == "E7"
    assert desk.get_ticket("0" * 32) is None
    assert desk.get_ticket("../sys_user") is None
    counts = api.get("/_sandbox/calls").json()["counts"]
    assert counts == {"GET /api/now/table/<table>/<sys_id>": 2}


def test_gate_then_release_in_one_patch_each(server: Server, api: httpx.Client) -> None:
    sys_id = incident(api, u_idv_required="true")
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None
    gated = desk.gate(ticket, "gate note — Deskgate")
    assert (gated.status, gated.marker) == ("3", "pending")
    done = desk.record(gated, "verified", "outcome — Deskgate", release=True)
    assert (done.status, done.marker, done.reason) == ("2", "verified", None)  # flag consumed
    raw = api.get(f"/_sandbox/records/incident/{sys_id}").json()
    assert raw["record"]["hold_reason"] == ""
    notes = [j["value"] for j in raw["journal"] if j["element"] == "work_notes"]
    assert notes == ["gate note — Deskgate", "outcome — Deskgate"]


def test_a_status_field_an_acl_drops_is_not_believed_written(
    server: Server, api: httpx.Client
) -> None:
    """The instance's write ACL on the status field needs the deskgate role: without it the
    Table API ignores the field and answers 200. Deskgate reads the answer and refuses it."""
    sys_id = incident(api, u_idv_required="true")
    admin = (SIM.admin_username, SIM.admin_password)
    [grant] = api.get(
        "/api/now/table/sys_user_has_role",
        params={"sysparm_query": f"user.user_name={SIM.username}^role.name=deskgate"},
    ).json()["result"]
    api.delete(f"/api/now/table/sys_user_has_role/{grant['sys_id']}", auth=admin).raise_for_status()
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None
    with pytest.raises(Fatal, match="did not keep u_idv_status") as refused:
        desk.gate(ticket, "gate note")
    assert not isinstance(refused.value, AuthFailed | Conflict)
    raw = api.get(f"/_sandbox/records/incident/{sys_id}").json()
    assert (raw["record"]["state"], raw["record"].get("u_idv_status", "")) == ("3", "")
    assert [j["value"] for j in raw["journal"]] == ["gate note"]  # the note itself was kept


def test_release_leaves_a_state_an_agent_changed(server: Server, api: httpx.Client) -> None:
    sys_id = incident(api, u_idv_required="true")
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None
    desk.gate(ticket, "gate")
    api.patch(f"/api/now/table/incident/{sys_id}", json={"state": "6"})  # an agent resolves it
    moved = desk.get_ticket(sys_id)
    assert moved is not None and not moved.active and moved.writable
    done = desk.record(moved, "failed", "outcome", release=True)
    assert done.status == "6"


def test_given_a_record_changed_since_it_was_read_when_gating_then_a_conflict(
    server: Server, api: httpx.Client
) -> None:
    sys_id = incident(api, u_idv_required="true")
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None
    api.patch(f"/api/now/table/incident/{sys_id}", json={"state": "7"})  # an agent closes it
    with pytest.raises(Conflict):
        desk.gate(ticket, "gate")
    raw = api.get(f"/_sandbox/records/incident/{sys_id}").json()
    assert raw["record"]["state"] == "7" and raw["journal"] == []  # not reopened, no note
    api.delete(f"/api/now/table/incident/{sys_id}")
    with pytest.raises(NotFound):
        desk.gate(ticket, "gate")


def test_an_outcome_written_against_the_gate_writes_answer_unless_changed(
    server: Server, api: httpx.Client
) -> None:
    """The worker keeps the record its gate PATCH returned and writes the outcome against it."""
    sys_id = incident(api, u_idv_required="true")
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    read = desk.get_ticket(sys_id)
    assert read is not None
    remembered = replace(desk.gate(read, "gate"), requester=None)  # as the worker keeps it
    api.patch(f"/api/now/table/incident/{sys_id}", json={"short_description": "edited"})
    with pytest.raises(Conflict):  # an agent's edit since the gate: re-read first
        desk.record(remembered, "verified", "outcome", release=True)
    fresh = desk.get_ticket(sys_id)
    assert fresh is not None
    unread = replace(desk.record(fresh, "review", "review", release=False), requester=None)
    assert desk.record(unread, "verified", "outcome", release=True).marker == "verified"


def test_keyset_polling_misses_and_doubles_nothing_on_a_shared_timestamp(
    server: Server, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.put("/_sandbox/clock", json={"now": "2026-11-26 10:00:00"}).raise_for_status()
    flagged = {incident(api, u_idv_required="true") for _ in range(130)}
    incident(api)  # not flagged
    api.put("/_sandbox/clock", json={"now": "2026-11-26 10:00:01"}).raise_for_status()
    flagged |= {incident(api, u_idv_required="true") for _ in range(20)}
    api.put("/_sandbox/clock", json={"now": None}).raise_for_status()
    desk = ServiceNowConnector("sn", desk_config(server), 5)

    monkeypatch.setattr(servicenow, "PAGES_PER_POLL", 1)  # force several polls
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        page, cursor = desk.find_flagged(cursor)
        seen += page
        if cursor is None:
            break
    assert cursor is None
    assert len(seen) == len(set(seen)) == 150
    assert set(seen) == flagged


def test_finished_records_drop_out_of_the_poll(server: Server, api: httpx.Client) -> None:
    first = incident(api, u_idv_required="true")
    second = incident(api, u_idv_required="true")
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(first)
    assert ticket is not None
    gated = desk.gate(ticket, "gate")
    assert desk.find_flagged(None) == ([second], None)  # the gate takes it out of the poll
    assert desk.find_flagged(None, gated=True) == ([first], None)  # and into the rare scan
    desk.record(gated, "verified", "done", release=True)
    assert desk.find_flagged(None) == ([second], None)
    assert desk.find_flagged(None, gated=True) == ([], None)


def test_without_consuming_the_flag_final_records_drop_out_by_status(
    server: Server, api: httpx.Client
) -> None:
    first = incident(api, category="password_reset")
    second = incident(api, category="password_reset")
    config = desk_config(
        server, flag_field="category", consume_flag=False, triggers={"password_reset": "reset"}
    )
    desk = ServiceNowConnector("sn", config, 5)
    ticket = desk.get_ticket(first)
    assert ticket is not None and ticket.reason == "reset"
    done = desk.record(desk.gate(ticket, "gate"), "failed", "done", release=True)
    assert done.reason == "reset"  # the category stays
    assert desk.find_flagged(None) == ([second], None)


@pytest.mark.parametrize("grant", ["oauth_client_credentials", "oauth_password"])
def test_oauth_token_is_cached_and_refreshed_after_expiry(
    server: Server, api: httpx.Client, grant: str
) -> None:
    sys_id = incident(api)
    desk = ServiceNowConnector("sn", desk_config(server, auth=grant), 5)
    for _ in range(3):
        assert desk.get_ticket(sys_id) is not None
    api.post("/_sandbox/expire_tokens").raise_for_status()
    assert desk.get_ticket(sys_id) is not None
    counts = api.get("/_sandbox/calls").json()["counts"]
    assert counts["POST /oauth_token.do"] == 2  # one at first use, one after the expiry


def test_rate_limit_is_typed_with_the_wait(server: Server, api: httpx.Client) -> None:
    sys_id = incident(api)
    api.put("/_sandbox/rate_limit", json={"requests": 1, "per_seconds": 30}).raise_for_status()
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    try:
        desk.get_ticket(sys_id)
        with pytest.raises(RateLimited) as limited:
            desk.get_ticket(sys_id)
        assert 0 < limited.value.retry_after <= 30
    finally:
        api.delete("/_sandbox/rate_limit").raise_for_status()


def test_config_needs_credentials_for_its_auth() -> None:
    data = settings_data()
    data["desks"] = {"sn": {"kind": "servicenow", "base_url": "http://x", "auth": "oauth_password"}}
    with pytest.raises(ValueError, match="oauth_client_id"):
        SETTINGS(**data)


# -- push ----------------------------------------------------------------------------------

BODY = b'{"table":"incident","sys_id":"' + b"a" * 32 + b'","number":"INC0010001"}'


def push(headers: dict[str, str], now: float = 1_800_000_000.0) -> PushAuth:
    return PushAuth(headers=headers, body=BODY, now=now, tolerance_seconds=300)


def test_a_signed_push_is_accepted_within_the_window_by_its_secret_only() -> None:
    header = sign("s3cret", "1800000000", BODY)
    ok = {"x-deskgate-signature": header, "x-deskgate-timestamp": "1800000000"}
    assert verify_push(push(ok), ["other", "s3cret"])
    assert not verify_push(push(ok), ["other"])
    assert not verify_push(push(ok, now=1_800_000_301.0), ["s3cret"])
    assert not verify_push(push({**ok, "x-deskgate-timestamp": "soon"}), ["s3cret"])
    for odd in ("nan", "inf", "-inf"):  # float() takes these; the window must not
        stamp = {"x-deskgate-timestamp": odd, "x-deskgate-signature": sign("s3cret", odd, BODY)}
        assert not verify_push(push(stamp), ["s3cret"])


def test_basic_auth_push_uses_the_secret_as_password() -> None:
    good = base64.b64encode(b"servicenow:s3cret").decode()
    bad = base64.b64encode(b"servicenow:guess").decode()
    assert verify_push(push({"authorization": f"Basic {good}"}), ["s3cret"])
    assert not verify_push(push({"authorization": f"Basic {bad}"}), ["s3cret"])
    assert not verify_push(push({"authorization": "Basic !!!"}), ["s3cret"])
    assert not verify_push(push({}), ["s3cret"])


def test_pushed_ticket_ids_needs_a_sys_id() -> None:
    assert pushed_ticket_ids({"sys_id": "a" * 32}) == ["a" * 32]
    with pytest.raises(ValueError, match="sys_id"):
        pushed_ticket_ids({"sys_id": "INC0010001"})


def test_requested_items_work_by_config(server: Server, api: httpx.Client) -> None:
    user = api.post("/api/now/table/sys_user", json={"email": "kim@acme.test"}).json()["result"]
    item = api.post(
        "/api/now/table/sc_req_item",
        json={"short_description": "access change", "requested_for": user["sys_id"],
              "u_idv_required": "true"},
    ).json()["result"]  # fmt: skip
    config = desk_config(
        server,
        table="sc_req_item",
        requester_field="requested_for",
        gate_state="-5",
        gate_hold_reason=None,
        release_state="2",
        inactive_states=["3", "4", "7"],
        closed_states=["3", "4", "7"],
    )
    desk = ServiceNowConnector("sn", config, 5)
    assert desk.find_flagged(None) == ([item["sys_id"]], None)
    ticket = desk.get_ticket(item["sys_id"])
    assert ticket is not None and ticket.display_id.startswith("RITM")
    assert ticket.requester is not None and ticket.requester.email == "kim@acme.test"
    gated = desk.gate(ticket, "gate")
    assert (gated.status, gated.marker) == ("-5", "pending")
    assert desk.record(gated, "verified", "done", release=True).status == "2"


def test_a_contacts_age_needs_an_audited_user_table() -> None:
    """With no audit row for the field, the user's creation time counts only where sys_user
    has audit rows at all: an unaudited table and an unchanged field look alike otherwise."""
    fresh = serve(sim.create_app(sim.ServiceNowSimConfig(seed_history=False)))
    api = httpx.Client(base_url=fresh.url, auth=(SIM.username, SIM.password), timeout=10)
    try:
        desk = ServiceNowConnector("sn", desk_config(fresh), 5)
        ticket = desk.get_ticket(incident(api))
        assert ticket is not None and ticket.requester is not None
        caller = ticket.requester
        assert desk.changed_at(caller, "email") is None  # nothing audited yet: cannot tell
        other = api.post("/api/now/table/sys_user", json={"user_name": "x"}).json()["result"]
        api.patch(f"/api/now/table/sys_user/{other['sys_id']}", json={"first_name": "X"})
        assert desk.changed_at(caller, "email") == caller.created_at  # audited, never changed
        api.patch(f"/api/now/table/sys_user/{caller.id}", json={"email": "caller@evil.test"})
        changed = desk.changed_at(caller, "email")
        assert changed is not None and caller.created_at is not None
        assert changed >= caller.created_at
        assert desk.changed_at(caller, "external_id") == caller.created_at  # employee_number
        assert desk.changed_at(caller, "user_field:not_a_field") is None
    finally:
        api.close()
        fresh.stop()


def test_a_field_excluded_from_auditing_has_no_age() -> None:
    """sys_user is audited, but mobile_phone carries no_audit=true: a phone set a minute ago
    leaves no audit row, so its age cannot be told (no link), while e-mail's still can."""
    fresh = serve(sim.create_app(sim.ServiceNowSimConfig(unaudited_user_fields=("mobile_phone",))))
    api = httpx.Client(base_url=fresh.url, auth=(SIM.username, SIM.password), timeout=10)
    try:
        desk = ServiceNowConnector("sn", desk_config(fresh), 5)
        ticket = desk.get_ticket(incident(api))
        assert ticket is not None and ticket.requester is not None
        caller = ticket.requester
        api.patch(f"/api/now/table/sys_user/{caller.id}", json={"mobile_phone": "+15550100"})
        assert desk.changed_at(caller, "phone") is None
        assert desk.changed_at(caller, "email") == caller.created_at  # audited, unchanged
        audited = api.get(
            "/api/now/table/sys_audit", params={"sysparm_query": "fieldname=mobile_phone"}
        ).json()["result"]
        assert audited == []  # the simulator writes no audit row for such a field
    finally:
        api.close()
        fresh.stop()


def test_without_the_dictionary_a_field_needs_its_own_audit_rows(
    server: Server, api: httpx.Client
) -> None:
    """Where sys_dictionary cannot be read, the table's audit rows are not enough: only an audit
    row for that very field shows it is audited."""
    api.put("/_sandbox/acl", json={"user": SIM.username, "table": "sys_dictionary",
                                   "read": False}).raise_for_status()  # fmt: skip
    try:
        desk = ServiceNowConnector("sn", desk_config(server), 5)
        ticket = desk.get_ticket(incident(api))
        assert ticket is not None and ticket.requester is not None
        caller = ticket.requester
        assert desk.changed_at(caller, "external_id") is None  # no employee_number audit row
        api.patch(f"/api/now/table/sys_user/{caller.id}", json={"employee_number": "E8"})
        assert desk.changed_at(caller, "external_id") is not None
    finally:
        api.put("/_sandbox/acl", json={"user": SIM.username, "table": "sys_dictionary",
                                       "read": True}).raise_for_status()  # fmt: skip


def test_who_flagged_is_the_user_of_the_audit_row_that_set_the_flag(
    server: Server, api: httpx.Client
) -> None:
    """The platform's ``sys_audit`` row for the flag field names who set it; a later change of
    the field to a value that is no trigger (the flag cleared) does not replace them, and the
    record's own text never counts."""
    sys_id = incident(api, short_description="flagged by ceo.office, honest")
    agent = httpx.Client(
        base_url=server.url, auth=(SIM.agent_username, SIM.agent_password), timeout=10
    )
    with agent:
        agent.patch(f"/api/now/table/incident/{sys_id}", json={"u_idv_required": "true"})
    api.patch(f"/api/now/table/incident/{sys_id}", json={"description": "after the flag"})
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(sys_id)
    assert ticket is not None and ticket.reason is not None
    api.delete("/_sandbox/calls").raise_for_status()
    assert desk.flagged_by(ticket) == SIM.agent_username
    assert api.get("/_sandbox/calls").json()["counts"] == {"GET /api/now/table/<table>": 1}
    unflagged = incident(api)  # never flagged: no row says who
    found = desk.get_ticket(unflagged)
    assert found is not None and desk.flagged_by(found) is None


def test_who_lifted_a_gate_is_the_sys_audit_user_or_else_the_last_writer(
    server: Server, api: httpx.Client
) -> None:
    """The newest sys_audit row that moved ``state`` off On Hold names the agent (a user name);
    where sys_audit cannot be read, the record's ``sys_updated_by``."""
    desk = ServiceNowConnector("sn", desk_config(server), 5)
    ticket = desk.get_ticket(incident(api, u_idv_required="true"))
    assert ticket is not None
    gated = desk.gate(ticket, "gate note")
    assert gated.held and gated.marker == "pending"
    agent = (SIM.agent_username, SIM.agent_password)
    api.patch(f"/api/now/table/incident/{ticket.id}", json={"state": "2"}, auth=agent)
    lifted = desk.get_ticket(ticket.id)
    assert lifted is not None and not lifted.held
    assert desk.gate_lifted_by(lifted) == SIM.agent_username
    api.patch(f"/api/now/table/incident/{ticket.id}", json={"short_description": "edited"})
    deny = {"user": SIM.username, "table": "sys_audit", "read": False}
    api.put("/_sandbox/acl", json=deny).raise_for_status()
    try:
        assert desk.gate_lifted_by(lifted) == SIM.username  # the last writer
    finally:
        api.put("/_sandbox/acl", json={**deny, "read": True}).raise_for_status()


def test_the_marker_scan_reads_each_verified_record_once_then_only_what_changed(
    server: Server, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset pages; a complete scan continues, next time, from a minute before its newest
    change, so a record changed in that same second is never skipped (a few are re-read)."""
    api.put("/_sandbox/clock", json={"now": "2026-11-26 10:00:00"}).raise_for_status()
    try:
        verified = {incident(api, u_idv_status="verified") for _ in range(3)}
        incident(api, u_idv_status="failed")
        desk = ServiceNowConnector("sn", desk_config(server), 5)
        monkeypatch.setattr(servicenow, "PAGE", 2)  # pages of two, as a large desk's of 100
        found, cursor = desk.find_marked("verified", None)
        assert set(found) == verified and len(found) == 3
        assert cursor == "2026-11-26 09:59:00"
        # Changed in the same second as the last record read, whatever their sys_ids.
        later = {incident(api, u_idv_status="verified") for _ in range(6)}
        found, _ = desk.find_marked("verified", cursor)
        assert set(found) == verified | later
    finally:
        api.put("/_sandbox/clock", json={"now": None}).raise_for_status()


def test_who_asked_is_read_only_from_an_audit_row_of_that_record_and_field() -> None:
    """An instance that ignores a query condition it cannot apply answers with any audit row: a
    row for another record, field or value names nobody."""
    rows = [
        {"tablename": "incident", "documentkey": "b" * 32, "fieldname": "u_idv_action",
         "newvalue": "unlock", "user": "someone.else"},
        {"tablename": "incident", "documentkey": "a" * 32, "fieldname": "u_idv_status",
         "newvalue": "unlock", "user": "someone.else"},
    ]  # fmt: skip
    app = Flask("servicenow")

    @app.get("/api/now/table/sys_audit")
    def audit() -> dict[str, Any]:
        return {"result": rows}

    lax = serve(app)
    desk = ServiceNowConnector("sn", desk_config(lax, auth="basic"), 5)
    ticket = Ticket("a" * 32, "INC1", None, None, "verified", True, True, "2", "v#1")
    assert desk.requested_by(ticket, "unlock") is None
    rows.append({**rows[0], "documentkey": "a" * 32, "user": "it.agent"})
    assert desk.requested_by(ticket, "unlock") == "it.agent"
    desk.close()
    lax.stop()
