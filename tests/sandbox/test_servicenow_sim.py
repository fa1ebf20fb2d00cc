"""The ServiceNow simulator over real HTTP: auth, Table API, queries, paging, business rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request
from pydantic import SecretStr

from connectors.provisioning import AdminCredential, SetupRequest
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.push import verify_push
from connectors.servicenow.setup import setup
from connectors.ticketing import PushAuth
from sandbox.common import Server, serve
from sandbox.options import StackOptions, Wiring
from sandbox.servicenow import ServiceNowSimConfig, create_app, provision, set_up
from sandbox.servicenow_driver import FLAG_FIELD, TRIGGERS

CFG = set_up(ServiceNowSimConfig())  # its ACL tests need what setup makes
FLAG = "u_idv_required"  # a custom field, as a desk adds one
ENVELOPE_401 = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}
ENVELOPE_404 = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}


@dataclass
class Sim:
    url: str
    api: httpx.Client  # Basic-authenticated

    def create(self, table: str, **values: Any) -> dict[str, Any]:
        resp = self.api.post(f"/api/now/table/{table}", json=values)
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()["result"]
        return result

    def query(self, table: str, **params: Any) -> list[dict[str, Any]]:
        resp = self.api.get(f"/api/now/table/{table}", params=params)
        assert resp.status_code == 200, resp.text
        result: list[dict[str, Any]] = resp.json()["result"]
        return result

    def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        resp = self.api.request(method, f"/_sandbox/{path}", json=body)
        assert resp.status_code < 300, resp.text
        return resp


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = serve(create_app(CFG))
    yield srv
    srv.stop()


@pytest.fixture
def sn(server: Server) -> Iterator[Sim]:
    with httpx.Client(base_url=server.url, auth=(CFG.username, CFG.password), timeout=5) as api:
        sim = Sim(server.url, api)
        for method, path in (
            ("POST", "reset"),
            ("DELETE", "calls"),
            ("DELETE", "faults"),
            ("DELETE", "rate_limit"),
        ):
            sim.control(method, path)
        yield sim


def sys_id(n: int) -> str:
    return f"{n:032x}"


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- auth ---------------------------------------------------------------------------------


def test_basic_auth_accepted_and_bad_auth_gets_failure_envelope(sn: Sim) -> None:
    assert sn.api.get("/api/now/table/incident").json() == {"result": []}

    anonymous = httpx.get(f"{sn.url}/api/now/table/incident")
    wrong = httpx.get(f"{sn.url}/api/now/table/incident", auth=(CFG.username, "nope"))

    for resp in (anonymous, wrong):
        assert resp.status_code == 401
        assert resp.json() == ENVELOPE_401


def oauth(sn: Sim, **form: str) -> httpx.Response:
    return httpx.post(f"{sn.url}/oauth_token.do", data=form)


def test_oauth_password_grant_then_refresh(sn: Sim) -> None:
    client = {"client_id": CFG.oauth_client_id, "client_secret": CFG.oauth_client_secret}
    resp = oauth(sn, grant_type="password", username=CFG.username, password=CFG.password, **client)
    assert resp.status_code == 200
    token = resp.json()
    assert set(token) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "useraccount"
    assert token["expires_in"] == CFG.access_token_ttl_seconds

    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{sn.url}/api/now/table/incident", headers=bearer).status_code == 200

    refreshed = oauth(
        sn, grant_type="refresh_token", refresh_token=token["refresh_token"], **client
    )
    assert refreshed.status_code == 200
    new_access = refreshed.json()["access_token"]
    assert new_access != token["access_token"]
    ok = httpx.get(
        f"{sn.url}/api/now/table/incident", headers={"Authorization": f"Bearer {new_access}"}
    )
    assert ok.status_code == 200

    bad_user = oauth(sn, grant_type="password", username=CFG.username, password="x", **client)
    assert bad_user.status_code == 401


def test_oauth_client_credentials_grant_has_no_refresh_token(sn: Sim) -> None:
    resp = oauth(
        sn,
        grant_type="client_credentials",
        client_id=CFG.oauth_client_id,
        client_secret=CFG.oauth_client_secret,
    )
    assert resp.status_code == 200
    assert "refresh_token" not in resp.json()
    bearer = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    assert httpx.get(f"{sn.url}/api/now/table/incident", headers=bearer).status_code == 200

    wrong_secret = oauth(
        sn, grant_type="client_credentials", client_id=CFG.oauth_client_id, client_secret="x"
    )
    assert wrong_secret.status_code == 401


def test_oauth_client_credentials_disabled_is_401() -> None:
    srv = serve(create_app(ServiceNowSimConfig(client_credentials_enabled=False)))
    try:
        resp = httpx.post(
            f"{srv.url}/oauth_token.do",
            data={
                "grant_type": "client_credentials",
                "client_id": CFG.oauth_client_id,
                "client_secret": CFG.oauth_client_secret,
            },
        )
        assert resp.status_code == 401
        assert "access_token" not in resp.json()
    finally:
        srv.stop()


def test_oauth_rejects_json_body(sn: Sim) -> None:
    resp = httpx.post(
        f"{sn.url}/oauth_token.do",
        json={
            "grant_type": "password",
            "client_id": CFG.oauth_client_id,
            "client_secret": CFG.oauth_client_secret,
            "username": CFG.username,
            "password": CFG.password,
        },
    )
    assert resp.status_code == 400
    assert "access_token" not in resp.json()


def test_expired_access_token_is_401_until_refreshed(sn: Sim) -> None:
    client = {"client_id": CFG.oauth_client_id, "client_secret": CFG.oauth_client_secret}
    token = oauth(
        sn, grant_type="password", username=CFG.username, password=CFG.password, **client
    ).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    sn.control("POST", "expire_tokens")

    resp = httpx.get(f"{sn.url}/api/now/table/incident", headers=bearer)
    assert resp.status_code == 401
    assert resp.json() == ENVELOPE_401
    refreshed = oauth(
        sn, grant_type="refresh_token", refresh_token=token["refresh_token"], **client
    )
    assert refreshed.status_code == 200


# -- records --------------------------------------------------------------------------------


def test_create_user_and_incident_returns_strings_numbers_and_links(sn: Sim) -> None:
    user = sn.create("sys_user", user_name="alice", first_name="Alice", last_name="Smith")
    assert re.fullmatch(r"[0-9a-f]{32}", user["sys_id"])
    assert user["name"] == "Alice Smith"  # derived like the platform does

    resp = sn.api.post(
        "/api/now/table/incident",
        json={
            "short_description": "Reset MFA",
            "caller_id": user["sys_id"],
            "u_score": 7,
            FLAG: False,
        },
    )
    assert resp.status_code == 201
    inc = resp.json()["result"]
    assert inc["number"] == "INC0010001"
    assert (inc["state"], inc["active"], inc["impact"], inc["priority"]) == ("1", "true", "3", "3")
    assert (inc["u_score"], inc[FLAG], inc["sys_mod_count"]) == ("7", "false", "0")
    assert all(isinstance(v, str) for k, v in inc.items() if k != "caller_id")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", inc["sys_created_on"])
    assert inc["sys_created_by"] == CFG.username
    assert inc["caller_id"] == {
        "link": f"{sn.url}/api/now/table/sys_user/{user['sys_id']}",
        "value": user["sys_id"],
    }
    assert resp.headers["Location"].endswith(f"/api/now/table/incident/{inc['sys_id']}")

    assert sn.create("incident", short_description="second")["number"] == "INC0010002"
    assert sn.create("sc_req_item", short_description="laptop")["number"] == "RITM0010001"

    fetched = sn.api.get(f"/api/now/table/incident/{inc['sys_id']}").json()["result"]
    assert fetched == inc
    v2 = sn.api.get(f"/api/now/v2/table/incident/{inc['sys_id']}").json()["result"]
    assert v2 == inc


def test_patch_with_work_notes_appends_journal_and_not_the_record(sn: Sim) -> None:
    inc = sn.create("incident", short_description="Reset MFA")
    resp = sn.api.patch(
        f"/api/now/table/incident/{inc['sys_id']}",
        json={"state": 3, "hold_reason": "1", "work_notes": "Identity check sent"},
    )
    assert resp.status_code == 200
    updated = resp.json()["result"]
    assert (updated["state"], updated["hold_reason"], updated["work_notes"]) == ("3", "1", "")
    assert updated["sys_mod_count"] == "1"

    journal = sn.query(
        "sys_journal_field", sysparm_query=f"element_id={inc['sys_id']}^element=work_notes"
    )
    assert len(journal) == 1
    entry = journal[0]
    assert (entry["element"], entry["name"], entry["value"]) == (
        "work_notes",
        "incident",
        "Identity check sent",
    )
    assert entry["element_id"] == inc["sys_id"]
    assert entry["sys_created_by"] == CFG.username

    shown = sn.api.get(
        f"/api/now/table/incident/{inc['sys_id']}",
        params={"sysparm_display_value": "true", "sysparm_fields": "work_notes"},
    ).json()["result"]["work_notes"]
    assert shown.endswith(f"- {CFG.username} (Work notes)\nIdentity check sent\n\n")

    raw = sn.api.get(f"/_sandbox/records/incident/{inc['sys_id']}").json()
    assert "work_notes" not in raw["record"]
    assert [j["value"] for j in raw["journal"]] == ["Identity check sent"]

    # A no-op update changes nothing, like the platform.
    same = sn.api.put(f"/api/now/table/incident/{inc['sys_id']}", json={"state": "3"})
    assert same.json()["result"]["sys_mod_count"] == "1"

    denied = sn.api.post("/api/now/table/sys_journal_field", json={"value": "forged"})
    assert denied.status_code == 403
    assert denied.json()["status"] == "failure"


def test_error_envelopes_for_missing_record_unknown_table_and_bad_json(sn: Sim) -> None:
    missing = sn.api.get(f"/api/now/table/incident/{sys_id(404)}")
    assert missing.status_code == 404
    assert missing.json() == ENVELOPE_404
    assert sn.api.patch(f"/api/now/table/incident/{sys_id(404)}", json={}).json() == ENVELOPE_404

    unknown = sn.api.get("/api/now/table/not_a_table")
    assert unknown.status_code in (400, 404)
    assert "Invalid table" in unknown.json()["error"]["message"]

    bad = sn.api.post(
        "/api/now/table/incident",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["status"] == "failure"

    inc = sn.create("incident")
    assert sn.api.delete(f"/api/now/table/incident/{inc['sys_id']}").status_code == 204
    assert sn.api.get(f"/api/now/table/incident/{inc['sys_id']}").status_code == 404


# -- rendering ----------------------------------------------------------------------------


@pytest.fixture
def caller_incident(sn: Sim) -> tuple[dict[str, Any], dict[str, Any]]:
    user = sn.create(
        "sys_user",
        user_name="alice",
        first_name="Alice",
        last_name="Smith",
        email="alice@example.com",
        mobile_phone="+15550100",
    )
    inc = sn.create("incident", caller_id=user["sys_id"], state="3", hold_reason="1")
    return user, inc


def test_sysparm_fields_dot_walks_into_literal_keys(
    sn: Sim, caller_incident: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _, inc = caller_incident
    rows = sn.query(
        "incident",
        sysparm_query=f"number={inc['number']}",
        sysparm_fields="number,caller_id.email,caller_id.mobile_phone,caller_id.user_name,state",
    )
    assert rows == [
        {
            "number": inc["number"],
            "caller_id.email": "alice@example.com",
            "caller_id.mobile_phone": "+15550100",
            "caller_id.user_name": "alice",
            "state": "3",
        }
    ]


def test_display_value_modes_and_reference_links(
    sn: Sim, caller_incident: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    user, inc = caller_incident
    link = f"{sn.url}/api/now/table/sys_user/{user['sys_id']}"

    def get(**params: str) -> dict[str, Any]:
        params["sysparm_fields"] = "caller_id,state,hold_reason"
        resp = sn.api.get(f"/api/now/table/incident/{inc['sys_id']}", params=params)
        result: dict[str, Any] = resp.json()["result"]
        return result

    assert get(sysparm_display_value="false") == {
        "caller_id": {"link": link, "value": user["sys_id"]},
        "state": "3",
        "hold_reason": "1",
    }
    assert get(sysparm_display_value="true") == {
        "caller_id": {"display_value": "Alice Smith", "link": link},
        "state": "On Hold",
        "hold_reason": "Awaiting Caller",
    }
    assert get(sysparm_display_value="all") == {
        "caller_id": {"display_value": "Alice Smith", "value": user["sys_id"], "link": link},
        "state": {"display_value": "On Hold", "value": "3"},
        "hold_reason": {"display_value": "Awaiting Caller", "value": "1"},
    }
    assert get(sysparm_exclude_reference_link="true")["caller_id"] == user["sys_id"]
    excluded = get(sysparm_display_value="true", sysparm_exclude_reference_link="true")
    assert excluded["caller_id"] == "Alice Smith"


def test_choices_are_queryable(sn: Sim) -> None:
    rows = sn.query(
        "sys_choice",
        sysparm_query="name=incident^element=state^ORDERBYsequence",
        sysparm_fields="value,label",
    )
    assert [(r["value"], r["label"]) for r in rows] == [
        ("1", "New"),
        ("2", "In Progress"),
        ("3", "On Hold"),
        ("6", "Resolved"),
        ("7", "Closed"),
        ("8", "Canceled"),
    ]


# -- encoded queries ------------------------------------------------------------------------


def numbers(rows: list[dict[str, Any]]) -> list[str]:
    return [r["number"] for r in rows]


def test_encoded_query_operators_and_ordering(sn: Sim) -> None:
    alice = sn.create("sys_user", user_name="alice", email="alice@example.com")
    vpn = sn.create(
        "incident",
        short_description="Password RESET for VPN",
        impact=1,
        category="network",
        u_score=9,
        caller_id=alice["sys_id"],
    )["number"]
    mfa = sn.create(
        "incident", short_description="Reset MFA token", impact=2, category="security", u_score=10
    )["number"]
    printer = sn.create(
        "incident", short_description="Printer jam", impact=3, category="hardware", u_score=2
    )["number"]

    def q(query: str) -> list[str]:
        return numbers(sn.query("incident", sysparm_query=query))

    assert q("short_descriptionLIKEreset") == [vpn, mfa]
    assert q("impact>=2^category!=hardware") == [mfa]
    assert q("category=network^ORcategory=hardware^ORDERBYDESCimpact") == [printer, vpn]
    # ^OR binds tighter than ^: (network OR security) AND impact=2.
    assert q("category=network^ORcategory=security^impact=2") == [mfa]
    assert q("impactIN1,3") == [vpn, printer]
    assert q("short_descriptionSTARTSWITHreset") == [mfa]
    assert q("u_score>9") == [mfa]  # numeric, not "9" > "10" as strings
    assert q("ORDERBYDESCu_score") == [mfa, vpn, printer]
    assert q("caller_id.email=alice@example.com") == [vpn]
    assert q("caller_idISNOTEMPTY") == [vpn]
    assert q("caller_idISEMPTY^ORDERBYcategory") == [printer, mfa]
    # Conditions on unknown fields are silently ignored, as ServiceNow does by default.
    assert q("no_such_field=1^category=security") == [mfa]


def test_keyset_query_with_shared_timestamps(sn: Sim) -> None:
    t0, t1, t2 = "2025-08-01 09:00:00", "2025-08-01 10:00:00", "2025-08-01 11:00:00"
    sn.control("PUT", "clock", {"now": t0})
    sn.create("incident", sys_id=sys_id(9))
    sn.control("PUT", "clock", {"now": t1})
    for n in (3, 1, 4, 2):
        sn.create("incident", sys_id=sys_id(n))
    sn.control("PUT", "clock", {"now": t2})
    sn.create("incident", sys_id=sys_id(0))
    sn.control("PUT", "clock", {"now": None})
    order = "^ORDERBYsys_updated_on^ORDERBYsys_id"

    def ids(query: str) -> list[int]:
        rows = sn.query("incident", sysparm_query=query, sysparm_fields="sys_id")
        return [int(r["sys_id"], 16) for r in rows]

    # Cursor (t1, 2): platform precedence reads this as (updated >= t1) AND sys_id > 2.
    assert ids(f"sys_updated_on>{t1}^ORsys_updated_on={t1}^sys_id>{sys_id(2)}{order}") == [3, 4]
    # A true keyset (later timestamp, or same timestamp and larger sys_id) needs ^NQ.
    assert ids(f"sys_updated_on>{t1}^NQsys_updated_on={t1}^sys_id>{sys_id(2)}{order}") == [3, 4, 0]
    assert ids(f"sys_updated_on>={t1}{order}") == [1, 2, 3, 4, 0]


def test_limit_offset_total_count_and_link_header(sn: Sim) -> None:
    for _ in range(5):
        sn.create("incident", active="true")
    resp = sn.api.get(
        "/api/now/table/incident",
        params={"sysparm_query": "active=true", "sysparm_limit": 2, "sysparm_offset": 2},
    )
    assert numbers(resp.json()["result"]) == ["INC0010003", "INC0010004"]
    assert resp.headers["X-Total-Count"] == "5"
    links = dict(
        (rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', resp.headers["Link"])
    )
    assert set(links) == {"first", "prev", "next", "last"}
    for rel, offset in (("first", 0), ("prev", 0), ("next", 4), ("last", 4)):
        url = httpx.URL(links[rel])
        assert url.path == "/api/now/table/incident"
        assert url.params["sysparm_offset"] == str(offset)
        assert url.params["sysparm_limit"] == "2"
        assert url.params["sysparm_query"] == "active=true"

    last_page = sn.api.get(links["last"])
    assert numbers(last_page.json()["result"]) == ["INC0010005"]
    assert 'rel="next"' not in last_page.headers["Link"]

    whole = sn.api.get("/api/now/table/incident")
    assert whole.headers["X-Total-Count"] == "5"
    assert "Link" not in whole.headers


# -- business rule --------------------------------------------------------------------------


@dataclass
class Receiver:
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    """Stands in for Deskgate's web app: records each push to ``/webhooks/servicenow/<desk>``."""
    rec = Receiver()
    app = Flask("receiver")

    @app.post("/webhooks/servicenow/<desk>")  # the desk's own endpoint (records.webhook_url)
    def hook(desk: str) -> Response:
        with rec.lock:
            rec.received.append((dict(request.headers), request.get_data()))
            status = rec.statuses.pop(0) if rec.statuses else 200
        return Response(status=status)

    srv = serve(app)
    yield rec, srv.url
    srv.stop()


def provisioned(sn: Sim, public_url: str) -> None:
    """What ``deskgate setup --apply`` writes, pointing the push at ``public_url``."""
    wiring = Wiring(sn.url, f"{public_url}/webhooks", StackOptions(redis_url="redis://unused"))
    provision(wiring, CFG)


def test_the_shipped_business_rule_fires_once_with_a_signature_deskgate_accepts(
    sn: Sim, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    with rec.lock:
        rec.received.clear()
        rec.statuses[:] = [503]  # first attempt fails, the retry succeeds
    provisioned(sn, url)
    flag, value = FLAG_FIELD, next(iter(TRIGGERS))

    inc = sn.create("incident", short_description="Reset MFA")
    sn.api.patch(f"/api/now/table/incident/{inc['sys_id']}", json={flag: value})
    wait_for(lambda: len(rec.received) == 2)

    headers, body = rec.received[-1]
    payload = json.loads(body)
    assert re.fullmatch(r"[0-9a-f]{32}", payload.pop("delivery"))  # one per firing
    assert payload == {
        "table": "incident",
        "sys_id": inc["sys_id"],
        "number": inc["number"],
        "event": "flagged",
    }
    assert rec.received[0][1] == body  # a retry re-sends the same firing
    assert headers["User-Agent"] == "ServiceNow/1.0"
    assert headers["Content-Type"] == "application/json"
    timestamp = headers["X-Deskgate-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 30
    mac = hmac.new(CFG.webhook_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Deskgate-Signature"] == "v1=" + base64.b64encode(mac.digest()).decode()
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = PushAuth(headers=lowered, body=body, now=time.time(), tolerance_seconds=300)
    assert verify_push(auth, [CFG.webhook_secret])

    # Unrelated updates while still flagged do not fire again; nor does an inactive record.
    sn.api.patch(f"/api/now/table/incident/{inc['sys_id']}", json={"short_description": "x"})
    sn.create("incident", state="7", **{flag: value})
    time.sleep(0.3)
    assert len(rec.received) == 2
    deliveries = sn.api.get("/_sandbox/webhook_deliveries").json()["deliveries"]
    assert len(deliveries) == 1
    assert deliveries[0]["status"] == "delivered"
    assert [a["status"] for a in deliveries[0]["attempts"]] == [503, 200]

    # A record inserted already flagged fires on insert; a value that is no trigger does not.
    sn.create("incident", short_description="not a trigger", **{flag: "something_else"})
    second = sn.create("incident", **{flag: value})
    wait_for(lambda: len(rec.received) == 3)
    assert json.loads(rec.received[-1][1])["number"] == second["number"]


def test_the_default_boolean_flag_pushes_when_an_agent_sets_it(
    sn: Sim, receiver: tuple[Receiver, str]
) -> None:
    """The default desk: a boolean u_idv_required with triggers {"true": ...}. In a script its
    value reads "1", so the condition setup writes must compare with that."""
    rec, url = receiver
    with rec.lock:
        rec.received.clear()
    config = ServiceNowDeskConfig.model_validate(
        {"kind": "servicenow", "base_url": sn.url, "username": CFG.username,
         "password": CFG.password, "webhook_secret": CFG.webhook_secret}
    )  # fmt: skip
    admin = AdminCredential(CFG.admin_username, SecretStr(CFG.admin_password))
    setup(SetupRequest(desk="acme_sn", config=config, public_url=url, admin=admin))
    inc = sn.create("incident", short_description="Reset MFA")
    assert inc[FLAG] == "false"  # a boolean column
    agent = (CFG.agent_username, CFG.agent_password)
    sn.api.patch(f"/api/now/table/incident/{inc['sys_id']}", json={FLAG: True}, auth=agent)
    wait_for(lambda: len(rec.received) == 1)
    assert json.loads(rec.received[0][1])["sys_id"] == inc["sys_id"]
    sn.api.patch(f"/api/now/table/incident/{inc['sys_id']}", json={FLAG: False}, auth=agent)
    time.sleep(0.3)
    assert len(rec.received) == 1  # cleared: no push


def test_execute_async_sends_later_than_the_rule_signed() -> None:
    """executeAsync() is queued: the push carries the time the rule ran, not the time it is
    sent (why Deskgate's window must cover the instance's queue delay)."""
    delayed = ServiceNowSimConfig(execute_async_delay_seconds=1.5)
    srv = serve(create_app(delayed))
    arrived: list[tuple[float, str]] = []
    app = Flask("late")

    @app.post("/webhooks/servicenow/<desk>")  # the desk's own endpoint (records.webhook_url)
    def hook(desk: str) -> Response:
        arrived.append((time.time(), request.headers["X-Deskgate-Timestamp"]))
        return Response(status=200)

    target = serve(app)
    try:
        with httpx.Client(base_url=srv.url, auth=(CFG.username, CFG.password)) as api:
            sim = Sim(srv.url, api)
            provision(Wiring(srv.url, f"{target.url}/webhooks",
                             StackOptions(redis_url="redis://unused")), delayed)  # fmt: skip
            sim.create("incident", **{FLAG_FIELD: next(iter(TRIGGERS))})
            wait_for(lambda: len(arrived) == 1)
        at, signed = arrived[0]
        assert at - int(signed) >= 1.5
    finally:
        srv.stop()
        target.stop()


def test_an_inactive_rule_or_an_unset_secret_pushes_nothing(
    sn: Sim, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    provisioned(sn, url)
    with rec.lock:
        rec.received.clear()
    admin = (CFG.admin_username, CFG.admin_password)
    rule = sn.api.get("/api/now/table/sys_script", auth=admin).json()["result"][0]
    secret = sn.api.get(
        "/api/now/table/sys_properties",
        params={"sysparm_query": "name=deskgate.incident.webhook_secret"}, auth=admin,
    ).json()["result"][0]  # fmt: skip
    flagged = {FLAG_FIELD: next(iter(TRIGGERS))}

    sn.api.patch(f"/api/now/table/sys_script/{rule['sys_id']}", json={"active": False}, auth=admin)
    sn.create("incident", **flagged)
    sn.api.patch(f"/api/now/table/sys_script/{rule['sys_id']}", json={"active": True}, auth=admin)
    sn.api.patch(
        f"/api/now/table/sys_properties/{secret['sys_id']}", json={"value": ""}, auth=admin
    )
    sn.create("incident", **flagged)
    time.sleep(0.3)
    assert rec.received == []
    log = sn.api.get("/_sandbox/script_log").json()["log"]
    assert [e["level"] for e in log] == ["error"]  # the rule's own gs.error
    assert "deskgate.incident.webhook_secret is not set" in log[0]["message"]


def test_metadata_is_written_by_an_admin_only(sn: Sim) -> None:
    denied = sn.api.post("/api/now/table/sys_script", json={"name": "mine", "script": "x"})
    assert denied.status_code == 403
    assert "ACL" in denied.json()["error"]["detail"]
    assert sn.query("sys_script") == []  # reading is allowed
    added = sn.api.post(
        "/api/now/table/sys_dictionary",
        json={"name": "incident", "element": "u_new_column", "internal_type": "string"},
        auth=(CFG.admin_username, CFG.admin_password),
    )
    assert added.status_code == 201
    inc = sn.create("incident")
    assert inc["u_new_column"] == ""  # the dictionary entry made the column


AGENT = (CFG.agent_username, CFG.agent_password)
ADMIN = (CFG.admin_username, CFG.admin_password)


def test_a_field_write_acl_drops_the_field_and_still_answers_200(sn: Sim) -> None:
    # The instance's field ACL incident.u_idv_status (write) needs the deskgate role.
    inc = sn.create("incident", short_description="before", u_idv_status="")
    path = f"/api/now/table/incident/{inc['sys_id']}"
    tried = sn.api.patch(path, json={"u_idv_status": "verified", "short_description": "after"},
                         auth=AGENT)  # fmt: skip
    assert tried.status_code == 200  # the platform does not say it ignored a field
    assert (tried.json()["result"]["short_description"], tried.json()["result"]["u_idv_status"]) \
        == ("after", "")  # fmt: skip
    assert sn.api.patch(path, json={"u_idv_status": "pending"}).json()["result"][
        "u_idv_status"] == "pending"  # fmt: skip
    overridden = sn.api.patch(path, json={"u_idv_status": "error"}, auth=ADMIN)
    assert overridden.json()["result"]["u_idv_status"] == "error"  # admin_overrides
    acl = sn.query("sys_security_acl", sysparm_query="name=incident.u_idv_status")[0]
    assert (acl["operation"], acl["type"], acl["active"]) == ("write", "record", "true")
    [link] = sn.query("sys_security_acl_role", sysparm_exclude_reference_link="true",
                      sysparm_query=f"sys_security_acl={acl['sys_id']}")  # fmt: skip
    [role] = sn.query("sys_user_role", sysparm_query=f"sys_id={link['sys_user_role']}")
    assert role["name"] == "deskgate"


def test_a_table_write_acl_refuses_with_403_and_servicenow_s_body(sn: Sim) -> None:
    inc = sn.create("incident")
    [role] = sn.query("sys_user_role", sysparm_query="name=deskgate")
    acl = sn.api.post("/api/now/table/sys_security_acl", auth=ADMIN, json={
        "name": "incident", "operation": "write", "type": "record", "active": True,
        "admin_overrides": True}).json()["result"]  # fmt: skip
    sn.api.post(
        "/api/now/table/sys_security_acl_role",
        auth=ADMIN,
        json={"sys_security_acl": acl["sys_id"], "sys_user_role": role["sys_id"]},
    ).raise_for_status()
    path = f"/api/now/table/incident/{inc['sys_id']}"
    refused = sn.api.patch(path, json={"short_description": "x"}, auth=AGENT)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"message": "Operation Failed",
                  "detail": "ACL Exception Update Failed due to security constraints"},
        "status": "failure",
    }  # fmt: skip
    assert sn.api.patch(path, json={"short_description": "x"}).status_code == 200  # deskgate
    # An ACL with a script the simulator does not run is passed by no one but an admin.
    sn.api.patch(f"/api/now/table/sys_security_acl/{acl['sys_id']}", auth=ADMIN,
                 json={"script": "answer = true;"}).raise_for_status()  # fmt: skip
    assert sn.api.patch(path, json={"short_description": "y"}).status_code == 403


# -- controls -------------------------------------------------------------------------------


def test_rate_limit_gives_429_with_retry_after_and_ratelimit_headers(sn: Sim) -> None:
    sn.control("PUT", "rate_limit", {"requests": 2, "per_seconds": 60})
    first = sn.api.get("/api/now/table/incident")
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-RateLimit-Rule"])
    sn.api.get("/api/now/table/incident")

    limited = sn.api.get("/api/now/table/incident")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["status"] == "failure"
    assert limited.json()["error"]["message"]


def test_injected_fault_uses_failure_envelope(sn: Sim) -> None:
    sn.control("POST", "faults", {"path_prefix": "/api/now/table/incident", "status": 503})
    failed = sn.api.get("/api/now/table/incident")
    assert failed.status_code == 503
    assert failed.json()["status"] == "failure"
    assert sn.api.get("/api/now/table/incident").status_code == 200


def test_call_counts(sn: Sim) -> None:
    sn.api.get("/api/now/table/incident")
    sn.api.get("/api/now/table/sys_user")
    inc = sn.create("incident")
    sn.api.patch(f"/api/now/table/incident/{inc['sys_id']}", json={"state": "2"})

    counts = sn.api.get("/_sandbox/calls").json()["counts"]
    assert counts == {
        "GET /api/now/table/<table>": 2,
        "POST /api/now/table/<table>": 1,
        "PATCH /api/now/table/<table>/<sys_id>": 1,
    }
