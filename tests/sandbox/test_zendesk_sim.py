"""The Zendesk simulator over real HTTP: what Deskgate relies on must behave as Zendesk does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from connectors.zendesk import objects
from connectors.zendesk.config import ZendeskDeskConfig
from sandbox.common import Call, Server, serve
from sandbox.zendesk import ZendeskSimConfig, ZendeskState, create_app, sign
from sandbox.zendesk_triggers import conditions_hold

EMAIL = "agent@acme.test"
ADMIN = "admin@acme.test"
TOKEN = "sandbox-zendesk-token"
SECRET = "sandbox-zendesk-signing-secret"
TRIGGER = "idv_mfa_reset"


@dataclass
class Receiver:
    """A tiny webhook endpoint that records deliveries and answers with scripted statuses."""

    server: Server
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # popped per request; empty = 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    webhook_id: str = ""  # the webhook the ``receiver`` fixture made
    trigger_id: int = 0

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    def wait_for(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            return list(self.received)


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    app = Flask("receiver")
    holder: dict[str, Receiver] = {}

    @app.post("/hook")
    def hook() -> Response:
        rec = holder["r"]
        with rec.lock:
            rec.received.append({"headers": dict(request.headers), "body": request.get_data()})
            status = rec.statuses.pop(0) if rec.statuses else 200
        return Response("{}", status=status, mimetype="application/json")

    rec = Receiver(serve(app))
    holder["r"] = rec
    yield rec
    rec.server.stop()


@pytest.fixture(scope="module")
def sim() -> Iterator[Server]:
    # One server per module: stopping a werkzeug server costs ~0.5 s, so tests share it and
    # the autouse ``clean`` fixture resets it through the control API instead.
    server = serve(create_app(ZendeskSimConfig()))
    yield server
    server.stop()


@pytest.fixture
def control(sim: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim.url}/_sandbox", trust_env=False, timeout=5) as client:
        yield client


@pytest.fixture(autouse=True)
def clean(control: httpx.Client) -> None:
    control.post("/reset").raise_for_status()
    control.delete("/calls").raise_for_status()
    control.delete("/faults").raise_for_status()
    control.post("/reset", json={"account": True}).raise_for_status()
    control.put("/triggers", json={"enabled": True}).raise_for_status()


def deskgate_trigger(webhook_id: str, tags: set[str] | None = None) -> dict[str, Any]:
    """The trigger `deskgate setup` writes (connectors/zendesk/objects.py), in any category."""
    config = ZendeskDeskConfig(
        kind="zendesk",
        base_url="https://acme.zendesk.test",  # type: ignore[arg-type]
        email=EMAIL,
        api_token=TOKEN,  # type: ignore[arg-type]
        triggers=dict.fromkeys(tags or {TRIGGER, "idv_account_unlock"}, "reason"),
    )
    trigger = objects.trigger("acme", config, webhook_id, "")
    del trigger["category_id"]
    return trigger


def tag_only_trigger(webhook_id: str) -> dict[str, Any]:
    """The trigger the set-up documented before: "a trigger tag is on it", nothing more."""
    trigger = deskgate_trigger(webhook_id, {TRIGGER})
    trigger["title"] = "Deskgate (tag only)"
    conditions = trigger["conditions"]["all"]
    conditions[:] = [c for c in conditions if c["operator"] != "not_includes"]
    return trigger


def make_webhook(admin: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Deskgate - test",
        "status": "active",
        "endpoint": url,
        "http_method": "POST",
        "request_format": "json",
        "subscriptions": ["conditional_ticket_events"],
        **fields,
    }
    made = admin.post("/webhooks", json={"webhook": body})
    assert made.status_code == 201, made.text
    webhook: dict[str, Any] = made.json()["webhook"]
    return webhook


@pytest.fixture
def receiver(receiver_server: Receiver, admin: httpx.Client) -> Receiver:
    """The shared receiver, emptied, with a webhook to it and Deskgate's trigger notifying it."""
    with receiver_server.lock:
        receiver_server.received.clear()
        receiver_server.statuses.clear()
    webhook = make_webhook(admin, receiver_server.url)
    receiver_server.webhook_id = webhook["id"]
    made = admin.post("/triggers", json={"trigger": deskgate_trigger(webhook["id"])})
    assert made.status_code == 201, made.text
    receiver_server.trigger_id = made.json()["trigger"]["id"]
    return receiver_server


@pytest.fixture
def api(sim: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{sim.url}/api/v2", auth=(f"{EMAIL}/token", TOKEN), trust_env=False, timeout=5
    ) as client:
        yield client


@pytest.fixture
def admin(sim: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{sim.url}/api/v2", auth=(f"{ADMIN}/token", TOKEN), trust_env=False, timeout=5
    ) as client:
        yield client


def deliveries(control: httpx.Client, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The delivery log once it holds ``count`` attempts (or whatever it holds at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        log: list[dict[str, Any]] = control.get("/webhook_deliveries").json()["deliveries"]
        if len(log) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.01)


def new_ticket(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": "Reset my MFA",
        "comment": {"body": "I lost my phone"},
        "requester": {"name": "Ann Smith", "email": "ann@example.test"},
    }
    body.update(fields)
    resp = api.post("/tickets.json", json={"ticket": body})
    assert resp.status_code == 201, resp.text
    ticket: dict[str, Any] = resp.json()["ticket"]
    return ticket


def update(api: httpx.Client, ticket_id: int, **fields: Any) -> httpx.Response:
    return api.put(f"/tickets/{ticket_id}.json", json={"ticket": fields})


# -- auth, envelopes, errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, (f"{EMAIL}/token", "wrong"), (EMAIL, TOKEN), ("other@acme.test/token", TOKEN)],
)
def test_bad_or_missing_credentials_get_401(sim: Server, auth: tuple[str, str] | None) -> None:
    resp = httpx.get(f"{sim.url}/api/v2/tickets/1.json", auth=auth, trust_env=False)
    assert resp.status_code == 401
    assert resp.json() == {"error": "Couldn't authenticate you"}


def test_control_routes_need_no_auth(control: httpx.Client) -> None:
    assert control.get("/webhook_deliveries").json() == {"deliveries": []}


def test_json_suffix_is_optional_and_headers_carry_rate_limit(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    with_suffix = api.get(f"/tickets/{ticket['id']}.json")
    without = api.get(f"/tickets/{ticket['id']}")
    assert with_suffix.json() == without.json()
    assert with_suffix.json()["ticket"]["id"] == ticket["id"]
    assert int(without.headers["X-Rate-Limit"]) > 0
    assert (
        0 <= int(without.headers["X-Rate-Limit-Remaining"]) < int(without.headers["X-Rate-Limit"])
    )


def test_without_a_rate_limit_remaining_counts_the_last_minutes_calls(
    sim: Server, api: httpx.Client, control: httpx.Client
) -> None:
    assert isinstance(sim.server.app, Flask)
    controls = sim.server.app.extensions["sandbox_controls"]
    with controls._lock:  # two calls answered more than a minute ago do not count
        controls.calls[:0] = [Call("GET", "/api/v2/users/me", "r", 200, time.time() - 90)] * 2
    remaining = [api.get("/users/me").headers["X-Rate-Limit-Remaining"] for _ in range(3)]
    assert remaining == ["699", "698", "697"]  # of Enterprise's 700/min, this call included
    control.delete("/calls").raise_for_status()
    assert api.get("/users/me").headers["X-Rate-Limit-Remaining"] == "699"


def test_missing_ticket_is_404_record_not_found(api: httpx.Client) -> None:
    resp = api.get("/tickets/999.json")
    assert resp.status_code == 404
    assert resp.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert update(api, 999, status="open").status_code == 404


def test_malformed_json_is_400(api: httpx.Client) -> None:
    resp = api.post(
        "/tickets.json", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "InvalidJSON"


def test_unknown_endpoint_is_404_invalid_endpoint(api: httpx.Client) -> None:
    resp = api.get("/no_such_thing.json")
    assert resp.status_code == 404
    assert resp.json()["error"] == "InvalidEndpoint"


def test_rejected_ticket_leaves_no_new_requester(api: httpx.Client) -> None:
    resp = api.post(
        "/tickets.json",
        json={
            "ticket": {"subject": "x", "requester": {"name": "Eve", "email": "eve@example.test"}}
        },
    )
    assert resp.status_code == 422
    assert "description" in resp.json()["details"]
    created = api.post("/users.json", json={"user": {"name": "Eve", "email": "eve@example.test"}})
    assert created.status_code == 201  # the e-mail is still free


def test_deleted_ticket_is_gone(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    assert api.delete(f"/tickets/{ticket['id']}.json").status_code == 204
    assert api.get(f"/tickets/{ticket['id']}.json").status_code == 404
    assert api.get("/search.json", params={"query": "type:ticket"}).json()["count"] == 0


# -- users and tickets ------------------------------------------------------------------------


def test_requester_email_creates_then_reuses_the_end_user(api: httpx.Client) -> None:
    first = new_ticket(api)
    second = new_ticket(api, requester={"name": "Ann S.", "email": "ANN@example.test"})
    assert first["requester_id"] == second["requester_id"]
    user = api.get(f"/users/{first['requester_id']}.json").json()["user"]
    assert user["email"] == "ann@example.test"
    assert user["role"] == "end-user"
    assert user["name"] == "Ann Smith"  # an existing user's name is not overwritten

    anonymous = new_ticket(api, requester={"name": "Walk-in"})
    assert anonymous["requester_id"] != first["requester_id"]
    walk_in = api.get(f"/users/{anonymous['requester_id']}").json()["user"]
    assert walk_in["email"] is None


def test_ticket_shape(api: httpx.Client) -> None:
    ticket = new_ticket(api, tags=["b", "A", "b"])
    assert ticket["id"] == 1
    assert ticket["status"] == "new"
    assert ticket["tags"] == ["a", "b"]
    assert ticket["assignee_id"] is None
    assert ticket["custom_fields"] == []
    assert ticket["external_id"] is None
    assert ticket["description"] == "I lost my phone"
    assert ticket["url"].endswith("/api/v2/tickets/1.json")
    datetime.strptime(ticket["updated_at"], "%Y-%m-%dT%H:%M:%SZ")
    comments = api.get("/tickets/1/comments.json").json()
    assert comments["count"] == 1
    assert comments["comments"][0]["body"] == "I lost my phone"
    assert comments["comments"][0]["author_id"] == ticket["requester_id"]


def test_users_create_show_update(api: httpx.Client) -> None:
    body = {"name": "Bob", "email": "bob@example.test", "phone": "+15550100", "external_id": "b-1"}
    created = api.post("/users.json", json={"user": {**body, "user_fields": {"tier": "gold"}}})
    assert created.status_code == 201
    user = created.json()["user"]
    assert user["id"] >= 1000 and user["role"] == "end-user"
    resp = api.put(
        f"/users/{user['id']}.json",
        json={"user": {"phone": "+15550199", "email": "new@example.test", "user_fields": {"x": 1}}},
    )
    updated = resp.json()["user"]
    assert updated["phone"] == "+15550199"
    assert updated["email"] == "bob@example.test"  # primary e-mail is write-once
    assert updated["user_fields"] == {"tier": "gold", "x": 1}
    duplicate = api.post("/users.json", json={"user": {"name": "B2", "email": "BOB@example.test"}})
    assert duplicate.status_code == 422
    assert duplicate.json()["error"] == "RecordInvalid"
    assert "email" in duplicate.json()["details"]


def test_internal_note_and_status_in_one_update(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    resp = update(api, ticket["id"], status="hold", comment={"body": "Gated", "public": False})
    assert resp.status_code == 200
    body = resp.json()
    assert body["ticket"]["status"] == "hold"
    events = body["audit"]["events"]
    assert {"type": "Change", "field_name": "status", "value": "hold", "previous_value": "new"} in [
        {k: e.get(k) for k in ("type", "field_name", "value", "previous_value")} for e in events
    ]
    assert any(e["type"] == "Comment" and e["public"] is False for e in events)
    comments = api.get(f"/tickets/{ticket['id']}/comments").json()["comments"]
    assert [c["public"] for c in comments] == [True, False]
    assert comments[1]["body"] == "Gated"
    assert comments[1]["author_id"] == api.get("/users/me.json").json()["user"]["id"]


def test_html_body_comment(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    update(api, ticket["id"], comment={"html_body": "<p>Hi &amp; bye</p>", "public": False})
    note = api.get(f"/tickets/{ticket['id']}/comments").json()["comments"][-1]
    assert note["html_body"] == "<p>Hi &amp; bye</p>"
    assert note["plain_body"] == "Hi & bye"


def test_status_cannot_go_back_to_new(api: httpx.Client) -> None:
    ticket = new_ticket(api, status="open")
    resp = update(api, ticket["id"], status="new")
    assert resp.status_code == 422
    assert "status" in resp.json()["details"]
    assert update(api, ticket["id"], status="bogus").status_code == 422


def test_end_user_reply_reopens_a_held_ticket(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    update(api, ticket["id"], status="hold")
    resp = update(
        api, ticket["id"], comment={"body": "any news?", "author_id": ticket["requester_id"]}
    )
    assert resp.json()["ticket"]["status"] == "open"


def test_additional_and_remove_tags_do_not_clobber(api: httpx.Client) -> None:
    ticket = new_ticket(api, tags=["keep_me", "old"])
    resp = update(api, ticket["id"], additional_tags=["new_one"], remove_tags=["old"])
    assert resp.json()["ticket"]["tags"] == ["keep_me", "new_one"]
    replaced = update(api, ticket["id"], tags=["only"])
    assert replaced.json()["ticket"]["tags"] == ["only"]


def test_ticket_id_in_body_is_ignored_with_a_warning(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    resp = update(api, ticket["id"], id=12345, subject="Renamed")
    assert resp.status_code == 200
    assert resp.json()["ticket"]["id"] == ticket["id"]
    assert resp.json()["ticket"]["subject"] == "Renamed"
    assert '"ticket.id"' in resp.headers["x-zendesk-api-warn"]
    assert "x-zendesk-api-warn" not in update(api, ticket["id"], subject="x").headers


def test_custom_fields_merge(api: httpx.Client) -> None:
    ticket = new_ticket(api, custom_fields=[{"id": 7, "value": "a"}])
    resp = update(api, ticket["id"], custom_fields=[{"id": 9, "value": "b"}])
    assert resp.json()["ticket"]["custom_fields"] == [
        {"id": 7, "value": "a"},
        {"id": 9, "value": "b"},
    ]


# -- tags endpoints ---------------------------------------------------------------------------


def test_tags_endpoints_add_set_remove(api: httpx.Client) -> None:
    ticket = new_ticket(api, tags=["one"])
    path = f"/tickets/{ticket['id']}/tags.json"
    assert api.get(path).json() == {"tags": ["one"]}
    assert api.put(path, json={"tags": ["two"]}).json() == {"tags": ["one", "two"]}
    assert api.request("DELETE", path, json={"tags": ["one"]}).json() == {"tags": ["two"]}
    assert api.post(path, json={"tags": ["three", "four"]}).json() == {"tags": ["four", "three"]}
    assert api.get(f"/tickets/{ticket['id']}").json()["ticket"]["tags"] == ["four", "three"]


def test_tag_endpoint_moves_updated_at(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    api.put(f"/tickets/{ticket['id']}/tags", json={"tags": ["x"]})
    after = api.get(f"/tickets/{ticket['id']}").json()["ticket"]
    assert after["updated_at"] > ticket["updated_at"]


# -- safe update and closed tickets ------------------------------------------------------------


def test_safe_update_conflicts_on_a_stale_stamp(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    stale = ticket["updated_at"]
    assert update(api, ticket["id"], subject="agent edit").status_code == 200
    resp = update(api, ticket["id"], status="hold", safe_update=True, updated_stamp=stale)
    assert resp.status_code == 409
    assert resp.json()["error"] == "UpdateConflict"
    assert resp.json()["description"].startswith("Safe Update prevented the update")
    assert api.get(f"/tickets/{ticket['id']}").json()["ticket"]["status"] == "new"

    fresh = api.get(f"/tickets/{ticket['id']}").json()["ticket"]["updated_at"]
    ok = update(api, ticket["id"], status="hold", safe_update=True, updated_stamp=fresh)
    assert ok.status_code == 200
    assert ok.json()["ticket"]["status"] == "hold"
    assert ok.json()["ticket"]["updated_at"] > fresh


def test_safe_update_on_the_tags_endpoint(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    update(api, ticket["id"], subject="moved on")
    body = {"tags": ["x"], "safe_update": True, "updated_stamp": ticket["updated_at"]}
    assert api.put(f"/tickets/{ticket['id']}/tags", json=body).status_code == 409


def test_closed_ticket_rejects_updates(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    assert update(api, ticket["id"], status="closed").status_code == 200
    resp = update(api, ticket["id"], comment={"body": "late", "public": False})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "RecordInvalid"
    assert "closed prevents ticket update" in body["details"]["status"][0]["description"]
    tags = api.put(f"/tickets/{ticket['id']}/tags", json={"tags": ["x"]})
    assert tags.status_code == 422


# -- search -----------------------------------------------------------------------------------


def test_search_tags_or_exclusion_and_status_range(api: httpx.Client) -> None:
    a = new_ticket(api, tags=["idv_mfa_reset"])
    b = new_ticket(api, tags=["idv_account_unlock"])
    c = new_ticket(api, tags=["idv_mfa_reset", "idv_gate_pending"])
    d = new_ticket(api, tags=["idv_mfa_reset"])
    new_ticket(api, tags=["unrelated"])
    update(api, d["id"], status="solved")
    query = (
        "type:ticket status<solved tags:idv_mfa_reset tags:idv_account_unlock"
        " -tags:idv_gate_pending"
    )
    resp = api.get("/search.json", params={"query": query})
    assert resp.status_code == 200
    body = resp.json()
    found = sorted(r["id"] for r in body["results"])
    assert found == [a["id"], b["id"]]
    assert c["id"] not in found  # excluded by -tags, although it has a wanted tag
    assert body["count"] == 2
    assert all(r["result_type"] == "ticket" for r in body["results"])
    assert body["next_page"] is None and body["previous_page"] is None
    assert api.get("/search", params={"query": "type:user"}).json()["count"] == 0
    requester = api.get("/search", params={"query": "requester:ann@example.test status:solved"})
    assert [r["id"] for r in requester.json()["results"]] == [d["id"]]


def test_search_sorting_and_pagination(api: httpx.Client) -> None:
    ids = [new_ticket(api, tags=["p"])["id"] for _ in range(5)]
    # Two updates: the first may share its second with the last ticket's creation.
    update(api, ids[0], subject="touched")
    update(api, ids[0], subject="touched last")
    params: dict[str, Any] = {
        "query": "tags:p",
        "sort_by": "updated_at",
        "sort_order": "asc",
        "per_page": 2,
    }
    seen: list[int] = []
    resp = api.get("/search.json", params=params)
    pages = 0
    while True:
        body = resp.json()
        assert body["count"] == 5
        seen += [r["id"] for r in body["results"]]
        pages += 1
        if not body["next_page"]:
            break
        assert "sort_by=updated_at" in body["next_page"]
        resp = api.get(body["next_page"])
    assert pages == 3
    assert seen[-1] == ids[0]
    assert sorted(seen) == ids
    desc = api.get("/search", params={**params, "sort_order": "desc", "per_page": 1}).json()
    assert desc["results"][0]["id"] == ids[0]


def test_search_page_past_1000_results_is_422(api: httpx.Client) -> None:
    resp = api.get("/search.json", params={"query": "type:ticket", "per_page": 100, "page": 11})
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid"
    ok = api.get("/search.json", params={"query": "type:ticket", "per_page": 100, "page": 10})
    assert ok.status_code == 200


def test_search_never_serves_beyond_1000(sim: Server, api: httpx.Client) -> None:
    # Build 1,001 tickets in memory: the API round-trips would slow the suite for nothing.
    state: ZendeskState = sim.server.app.extensions["zendesk_state"]  # type: ignore[attr-defined]
    for i in range(1001):
        state.create_ticket(
            {"subject": f"bulk {i}", "comment": {"body": "x"}, "tags": ["bulk"]},
            state.agent_id,
            "http://sandbox",
        )
    last = api.get("/search.json", params={"query": "tags:bulk", "page": 10}).json()
    assert last["count"] == 1001
    assert len(last["results"]) == 100
    assert last["results"][-1]["id"] == 1000
    assert last["next_page"] is None


# -- trigger emulation --------------------------------------------------------------------------


def test_trigger_posts_a_signed_webhook_with_the_rendered_body(
    api: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    ticket = new_ticket(api, tags=["other"])
    time.sleep(0.1)
    assert receiver.received == []  # no trigger tag, no webhook

    update(api, ticket["id"], additional_tags=[TRIGGER])
    [delivery] = receiver.wait_for(1)
    headers, raw = delivery["headers"], delivery["body"]
    assert json.loads(raw) == {"ticket_id": str(ticket["id"])}  # {{ticket.id}} rendered
    timestamp = headers["X-Zendesk-Webhook-Signature-Timestamp"]
    datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
    assert headers["X-Zendesk-Webhook-Signature"] == sign(SECRET, timestamp, raw)
    assert headers["User-Agent"] == "Zendesk Webhook"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Zendesk-Webhook-Id"] and headers["X-Zendesk-Account-Id"]
    [logged] = deliveries(control, 1)
    assert (logged["status"], logged["attempt"], logged["ticket_id"]) == (200, 1, ticket["id"])


def pushes(receiver: Receiver, count: int, settle: float = 0.3) -> int:
    """How many webhooks arrived, once ``count`` did and nothing more came within ``settle``."""
    receiver.wait_for(count)
    time.sleep(settle)
    with receiver.lock:
        return len(receiver.received)


def fired(control: httpx.Client, count: int) -> list[int]:
    """Which trigger each delivery came from, once ``count`` were made (and ``settle`` more)."""
    deliveries(control, count)
    time.sleep(0.3)
    return [d["trigger_id"] for d in control.get("/webhook_deliveries").json()["deliveries"]]


def test_the_documented_trigger_fires_while_deskgate_does_not_hold_the_ticket(
    api: httpx.Client, receiver: Receiver
) -> None:
    """Zendesk runs every trigger on every update: the documented one stays false from the
    gate write to the outcome, and is true again when the ticket is flagged anew."""
    ticket = new_ticket(api)
    tid, requester = ticket["id"], ticket["requester_id"]
    api.put(f"/tickets/{tid}/tags", json={"tags": [TRIGGER]})  # the agent flags it
    assert pushes(receiver, 1) == 1
    # Before the gate, the requester's reply fires it again (Deskgate's start is idempotent).
    update(api, tid, comment={"body": "any news?", "author_id": requester})
    assert pushes(receiver, 2) == 2
    # The gate write: internal note, hold, idv_pending.
    update(api, tid, comment={"body": "gate", "public": False}, status="hold",
           additional_tags=["idv_pending"])  # fmt: skip
    update(api, tid, comment={"body": "waiting", "author_id": requester})  # reopens it
    update(api, tid, comment={"body": "agent note", "public": False})
    api.put(f"/tickets/{tid}/tags", json={"tags": ["vip"]})  # a tag-only change
    assert pushes(receiver, 2) == 2
    # The outcome: the trigger tag and the open marker go, the final marker comes.
    update(api, tid, comment={"body": "verified", "public": False}, status="open",
           additional_tags=["idv_verified"], remove_tags=[TRIGGER, "idv_pending"])  # fmt: skip
    update(api, tid, comment={"body": "thanks", "author_id": requester})
    assert pushes(receiver, 2) == 2
    # Flagged again, with idv_verified still on the ticket: a new verification is wanted.
    api.put(f"/tickets/{tid}/tags", json={"tags": [TRIGGER]})
    assert pushes(receiver, 3) == 3


def test_the_old_tag_only_trigger_refires_on_a_comment_and_the_documented_one_does_not(
    api: httpx.Client, admin: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    """Both triggers side by side: once idv_pending is on the ticket, a comment-only update
    fires the tag-only trigger (the set-up documented before) and not the documented one."""
    old = admin.post("/triggers", json={"trigger": tag_only_trigger(receiver.webhook_id)})
    old_id, new_id = old.json()["trigger"]["id"], receiver.trigger_id
    ticket = new_ticket(api, tags=[TRIGGER])
    assert sorted(fired(control, 2)) == sorted([old_id, new_id])  # both: the ticket is new
    update(api, ticket["id"], additional_tags=["idv_pending"], status="hold")
    assert fired(control, 3)[2:] == [old_id]  # the gate write
    update(api, ticket["id"], comment={"body": "a comment, nothing else", "public": False})
    assert fired(control, 4)[3:] == [old_id]
    assert len(receiver.wait_for(4)) == 4


def test_an_update_that_changes_nothing_runs_no_trigger(
    api: httpx.Client, receiver: Receiver
) -> None:
    ticket = new_ticket(api, tags=[TRIGGER])
    assert pushes(receiver, 1) == 1
    api.put(f"/tickets/{ticket['id']}/tags", json={"tags": [TRIGGER]})  # already there
    assert pushes(receiver, 1) == 1


@pytest.mark.parametrize(
    ("conditions", "status", "tags", "holds"),
    [
        ({"all": [("current_tags", "includes", "a b")]}, "open", ["b"], True),
        ({"all": [("current_tags", "includes", "a b")]}, "open", ["c"], False),
        ({"all": [("current_tags", "not_includes", "a b")]}, "open", ["c"], True),
        ({"all": [("current_tags", "not_includes", "a b")]}, "open", ["c", "a"], False),
        ({"all": [("status", "is", "hold")]}, "hold", [], True),
        ({"all": [("status", "is_not", "hold")]}, "hold", [], False),
        ({"all": [("status", "less_than", "solved")]}, "hold", [], True),
        ({"all": [("status", "less_than", "solved")]}, "solved", [], False),
        ({"all": [("status", "greater_than", "pending")]}, "hold", [], True),
        ({"all": [("status", "greater_than", "pending")]}, "open", [], False),
        # all: every one; any: at least one, if there are any
        ({"all": [("status", "is", "open"), ("current_tags", "includes", "a")]}, "open", [], False),
        (
            {"any": [("status", "is", "new"), ("current_tags", "includes", "a")]},
            "open",
            ["a"],
            True,
        ),
        ({"any": [("status", "is", "new"), ("current_tags", "includes", "a")]}, "open", [], False),
        ({"all": [("status", "is", "open")], "any": []}, "open", [], True),
    ],
)
def test_trigger_conditions_read_as_zendesk_reads_them(
    conditions: dict[str, list[tuple[str, str, str]]], status: str, tags: list[str], holds: bool
) -> None:
    shaped = {
        group: [{"field": f, "operator": o, "value": v} for f, o, v in items]
        for group, items in conditions.items()
    }
    assert conditions_hold(shaped, {"status": status, "tags": tags}) is holds


def test_triggers_api_creates_lists_replaces_and_validates(
    api: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    [default] = api.get("/triggers.json").json()["triggers"]  # agents may read triggers
    assert default["id"] == receiver.trigger_id and default["category_id"]
    hook = receiver.webhook_id
    body = {
        "title": "Notify on VIP",
        "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": "vip"}]},
        "actions": [{"field": "notification_webhook", "value": [hook, '{"id": "{{ticket.id}}"}']}],
    }
    assert api.post("/triggers.json", json={"trigger": body}).status_code == 403  # an agent
    created = admin.post("/triggers.json", json={"trigger": body})
    assert created.status_code == 201, created.text
    trigger = created.json()["trigger"]
    assert trigger["active"] is True and trigger["position"] == 2
    assert api.get(f"/triggers/{trigger['id']}").json()["trigger"] == trigger
    found = admin.get("/triggers/search", params={"query": "on vip"}).json()["triggers"]
    assert [t["id"] for t in found] == [trigger["id"]]

    ticket = new_ticket(api, tags=["vip"])
    [delivery] = receiver.wait_for(1)
    assert json.loads(delivery["body"]) == {"id": str(ticket["id"])}

    # PUT replaces conditions and actions together: the conditions sent alone leave the
    # trigger without actions (Zendesk's documented behaviour), so it notifies nobody.
    status_only = {"all": [{"field": "status", "operator": "is", "value": "pending"}]}
    path = f"/triggers/{trigger['id']}"
    replaced = admin.put(path, json={"trigger": {"conditions": status_only}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["trigger"]["conditions"] == {**status_only, "any": []}
    assert replaced.json()["trigger"]["actions"] == []
    update(api, ticket["id"], status="pending")
    assert pushes(receiver, 1) == 1
    # The whole definition back: it fires again.
    whole = {**body, "conditions": status_only}
    assert admin.put(f"/triggers/{trigger['id']}", json={"trigger": whole}).status_code == 200
    update(api, ticket["id"], comment={"body": "ping"})
    assert pushes(receiver, 2) == 2

    admin.put(f"/triggers/{trigger['id']}", json={"trigger": {"active": False}})
    update(api, ticket["id"], comment={"body": "ping again"})
    assert pushes(receiver, 2) == 2  # inactive

    bad = [
        {**body, "conditions": {"all": [{"field": "subject", "operator": "is", "value": "x"}]}},
        {**body, "conditions": {"all": [{"field": "status", "operator": "is", "value": "gone"}]}},
        {**body, "conditions": {"all": [], "any": []}},
        {**body, "actions": [{"field": "notification_webhook", "value": ["nope", "{}"]}]},
        {**body, "actions": [{"field": "status", "value": "solved"}]},
        {**body, "title": ""},
        {**body, "category_id": "404"},
    ]
    for payload in bad:
        refused = admin.post("/triggers.json", json={"trigger": payload})
        assert refused.status_code == 422, payload
        assert refused.json()["error"] == "RecordInvalid"
    assert admin.get("/triggers/1").status_code == 404
    assert api.delete(f"/triggers/{trigger['id']}").status_code == 403
    assert admin.delete(f"/triggers/{trigger['id']}").status_code == 204
    assert len(api.get("/triggers").json()["triggers"]) == 1


def test_trigger_skips_solved_tickets_and_honours_the_switch(
    api: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    new_ticket(api, tags=[TRIGGER], status="solved")
    off = control.put("/triggers", json={"enabled": False}).json()
    assert off["enabled"] is False
    new_ticket(api, tags=[TRIGGER])
    time.sleep(0.2)
    assert receiver.received == []
    control.put("/triggers", json={"enabled": True})
    new_ticket(api, tags=[TRIGGER])
    assert len(receiver.wait_for(1)) == 1


def test_delivery_retries_on_5xx(
    api: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [503, 500]
    new_ticket(api, tags=[TRIGGER])
    received = receiver.wait_for(3)
    log = deliveries(control, 3)
    assert len(received) == 3
    assert len({r["body"] for r in received}) == 1  # the same invocation, re-sent
    assert [(d["attempt"], d["status"]) for d in log] == [(1, 503), (2, 500), (3, 200)]


def test_unreachable_webhook_is_recorded_as_an_error(
    api: httpx.Client, admin: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    patch = {"webhook": {"endpoint": "http://127.0.0.1:9/hook"}}
    assert admin.patch(f"/webhooks/{receiver.webhook_id}", json=patch).status_code == 204
    new_ticket(api, tags=[TRIGGER])
    [first, *_] = deliveries(control, 1)
    assert first["status"] is None
    assert first["error"]
    assert first["attempt"] == 1


def test_signature_matches_the_documented_vector() -> None:
    assert (
        sign(
            "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
            "2021-03-25T05:09:27Z",
            b'{"event":"ticket.updated","id":123}',
        )
        == "S/RDdU2ERmj7LHDDoWJ2onPYH+t7/f2+LTM4dL7UiLM="
    )


# -- sandbox controls ------------------------------------------------------------------------


def test_fault_injection(api: httpx.Client, control: httpx.Client) -> None:
    ticket = new_ticket(api)
    control.post("/faults", json={"path_prefix": "/api/v2/tickets", "status": 503, "method": "PUT"})
    failed = update(api, ticket["id"], status="open")
    assert failed.status_code == 503
    assert failed.json()["error"]
    assert update(api, ticket["id"], status="open").status_code == 200


def test_rate_limit_answers_429_with_retry_after(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/rate_limit", json={"requests": 2, "per_seconds": 60})
    assert api.get("/users/me").headers["X-Rate-Limit"] == "2"
    assert api.get("/users/me").status_code == 200
    limited = api.get("/users/me")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    control.delete("/rate_limit")
    assert api.get("/users/me").status_code == 200


def test_calls_are_counted_per_route(api: httpx.Client, control: httpx.Client) -> None:
    ticket = new_ticket(api)
    update(api, ticket["id"], status="open")
    api.put(f"/tickets/{ticket['id']}", json={"ticket": {"status": "pending"}})
    counts = control.get("/calls").json()["counts"]
    assert counts["PUT /api/v2/tickets/<int:ticket_id>"] == 2
    assert counts["POST /api/v2/tickets"] == 1
    assert not any(key.startswith("GET /_sandbox") for key in counts)


def test_sandbox_ticket_view_and_reset(api: httpx.Client, control: httpx.Client) -> None:
    ticket = new_ticket(api)
    update(api, ticket["id"], comment={"body": "note", "public": False})
    view = control.get(f"/tickets/{ticket['id']}").json()
    assert view["ticket"]["id"] == ticket["id"]
    assert [c["body"] for c in view["comments"]] == ["I lost my phone", "note"]
    assert view["version"] == 2
    assert control.post("/reset").json() == {"ok": True}
    assert api.get(f"/tickets/{ticket['id']}").status_code == 404
    assert new_ticket(api)["id"] == 1


def test_show_ticket_sideloads_users_on_request(api: httpx.Client) -> None:
    ticket = new_ticket(api)
    plain = api.get(f"/tickets/{ticket['id']}.json").json()
    assert "users" not in plain
    body = api.get(f"/tickets/{ticket['id']}.json", params={"include": "users"}).json()
    requester = next(u for u in body["users"] if u["id"] == ticket["requester_id"])
    assert requester["email"] == "ann@example.test"


# -- the account's configuration: webhooks, categories, macros, statuses, staff -----------------


def test_webhooks_create_find_patch_delete_as_zendesk_answers(
    admin: httpx.Client, api: httpx.Client
) -> None:
    made = make_webhook(admin, "https://deskgate.example.test/webhooks/zendesk")
    assert len(made["id"]) == 26 and made["id"].isalnum()  # a ULID
    assert made["subscriptions"] == ["conditional_ticket_events"]
    other = make_webhook(admin, "https://elsewhere.test/hook", name="Something else")
    found = admin.get("/webhooks", params={"filter[name_contains]": "deskgate"}).json()
    assert [w["id"] for w in found["webhooks"]] == [made["id"]]
    assert found["meta"]["has_more"] is False
    first = admin.get("/webhooks", params={"page[size]": 1}).json()
    assert first["meta"]["has_more"] is True
    assert [w["id"] for w in first["webhooks"]] == [made["id"]]
    rest = httpx.get(first["links"]["next"], auth=(f"{ADMIN}/token", TOKEN), trust_env=False)
    assert [w["id"] for w in rest.json()["webhooks"]] == [other["id"]]

    patched = admin.patch(f"/webhooks/{made['id']}", json={"webhook": {"status": "inactive"}})
    assert (patched.status_code, patched.content) == (204, b"")  # no body
    assert admin.get(f"/webhooks/{made['id']}").json()["webhook"]["status"] == "inactive"
    immutable = {"webhook": {"subscriptions": ["zen:event-type:ticket.created"]}}
    assert admin.patch(f"/webhooks/{made['id']}", json=immutable).status_code == 400
    missing = admin.post("/webhooks", json={"webhook": {"name": "x"}})
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"]
    # Webhooks are an admin's: an agent is refused everything about them.
    assert api.get("/webhooks").status_code == 403
    assert api.get(f"/webhooks/{made['id']}/signing_secret").status_code == 403
    assert admin.delete(f"/webhooks/{other['id']}").status_code == 204
    assert admin.get(f"/webhooks/{other['id']}").status_code == 404


def test_each_webhook_signs_with_its_own_secret_and_a_reset_retires_the_old_one(
    api: httpx.Client, admin: httpx.Client, receiver: Receiver
) -> None:
    path = f"/webhooks/{receiver.webhook_id}/signing_secret"
    shown = admin.get(path).json()["signing_secret"]
    assert shown == {"secret": SECRET, "algorithm": "SHA256"}  # the first webhook's, fixed
    new_ticket(api, tags=[TRIGGER])
    [first] = receiver.wait_for(1)
    stamp = first["headers"]["X-Zendesk-Webhook-Signature-Timestamp"]
    assert first["headers"]["X-Zendesk-Webhook-Signature"] == sign(SECRET, stamp, first["body"])
    assert first["headers"]["X-Zendesk-Webhook-Id"] == receiver.webhook_id

    reset = admin.post(path)
    assert reset.status_code == 201
    fresh = reset.json()["signing_secret"]["secret"]
    assert fresh != SECRET and admin.get(path).json()["signing_secret"]["secret"] == fresh
    new_ticket(api, tags=[TRIGGER])
    second = receiver.wait_for(2)[1]
    stamp = second["headers"]["X-Zendesk-Webhook-Signature-Timestamp"]
    signature = second["headers"]["X-Zendesk-Webhook-Signature"]
    assert signature == sign(fresh, stamp, second["body"]) != sign(SECRET, stamp, second["body"])


def test_no_trigger_fires_until_one_is_made_and_an_inactive_webhook_gets_nothing(
    api: httpx.Client, admin: httpx.Client, control: httpx.Client, receiver_server: Receiver
) -> None:
    new_ticket(api, tags=[TRIGGER])  # an empty account: nothing wired in code
    webhook = make_webhook(admin, receiver_server.url, status="inactive")
    admin.post("/triggers", json={"trigger": deskgate_trigger(webhook["id"])})
    new_ticket(api, tags=[TRIGGER])
    time.sleep(0.3)
    assert control.get("/webhook_deliveries").json()["deliveries"] == []


def test_trigger_categories_and_a_trigger_placed_in_one(admin: httpx.Client) -> None:
    made = admin.post("/trigger_categories", json={"trigger_category": {"name": "Deskgate"}})
    assert made.status_code == 201
    category = made.json()["trigger_category"]
    assert isinstance(category["id"], str)
    listed = admin.get("/trigger_categories").json()["trigger_categories"]
    assert [c["name"] for c in listed] == ["Deskgate"]
    webhook = make_webhook(admin, "https://deskgate.example.test/webhooks/zendesk")
    trigger = {**deskgate_trigger(webhook["id"]), "category_id": category["id"]}
    placed = admin.post("/triggers", json={"trigger": trigger}).json()["trigger"]
    assert placed["category_id"] == category["id"]
    inline = {**deskgate_trigger(webhook["id"]), "title": "x", "category": {"name": "Inline"}}
    other = admin.post("/triggers", json={"trigger": inline}).json()["trigger"]
    assert other["category_id"] not in ("", category["id"])
    by_category = admin.get("/triggers", params={"category_id": category["id"]}).json()
    assert [t["id"] for t in by_category["triggers"]] == [placed["id"]]


def test_macro_apply_answers_the_changes_without_saving_them(
    api: httpx.Client, admin: httpx.Client
) -> None:
    body = {"title": "Verify identity: MFA reset",
            "actions": [{"field": "current_tags", "value": TRIGGER}]}  # fmt: skip
    assert api.post("/macros", json={"macro": body}).status_code == 403
    macro = admin.post("/macros", json={"macro": body}).json()["macro"]
    assert macro["active"] is True
    found = api.get("/macros/search", params={"query": "verify identity"}).json()["macros"]
    assert [m["id"] for m in found] == [macro["id"]]
    ticket = new_ticket(api, tags=["vip"])
    applied = api.get(f"/tickets/{ticket['id']}/macros/{macro['id']}/apply")
    assert applied.json()["result"]["ticket"]["tags"] == sorted(["vip", TRIGGER])
    assert api.get(f"/tickets/{ticket['id']}").json()["ticket"]["tags"] == ["vip"]  # unsaved
    renamed = admin.put(f"/macros/{macro['id']}", json={"macro": {"active": False}})
    assert renamed.json()["macro"]["active"] is False
    bad = admin.post("/macros", json={"macro": {**body, "actions": [{"field": "x", "value": "y"}]}})
    assert bad.status_code == 422


def test_on_hold_is_refused_when_the_account_has_it_off(
    api: httpx.Client, control: httpx.Client
) -> None:
    statuses = api.get("/custom_statuses").json()["custom_statuses"]
    assert {s["status_category"]: s["active"] for s in statuses}["hold"] is True
    control.put("/account", json={"hold_enabled": False}).raise_for_status()
    statuses = api.get("/custom_statuses").json()["custom_statuses"]
    assert {s["status_category"]: s["active"] for s in statuses}["hold"] is False
    ticket = new_ticket(api)
    refused = update(api, ticket["id"], status="hold")
    assert refused.status_code == 422 and "hold" in refused.text


def test_users_me_is_whoever_authenticated_and_a_restricted_agent_is_refused(
    sim: Server, api: httpx.Client, admin: httpx.Client
) -> None:
    me = api.get("/users/me").json()["user"]
    assert (me["email"], me["role"], me["ticket_restriction"]) == (EMAIL, "agent", None)
    assert admin.get("/users/me").json()["user"]["role"] == "admin"
    ticket = new_ticket(api)
    restrict = {"user": {"ticket_restriction": "assigned"}}
    assert api.put(f"/users/{me['id']}", json=restrict).status_code == 403  # not their call
    assert admin.put(f"/users/{me['id']}", json=restrict).status_code == 200
    assert update(api, ticket["id"], status="open").status_code == 403
    # An end user's e-mail with the account's token does not authenticate.
    end_user = httpx.get(f"{sim.url}/api/v2/users/me", auth=("ann@example.test/token", TOKEN),
                         trust_env=False)  # fmt: skip
    assert end_user.status_code == 401


# -- ticket audits: who changed what ------------------------------------------------------


def test_ticket_audits_page_by_cursor_oldest_first_with_each_change_and_its_author(
    api: httpx.Client, sim: Server
) -> None:
    """Zendesk's List Audits for a Ticket with ``page[size]``: ``meta.has_more`` and
    ``links.next`` walk the audits oldest first; each audit's author is the user who made the
    change, and a status or tag change is a ``Change`` event with its previous value."""
    ticket = new_ticket(api, status="hold", tags=["idv_pending"])
    with httpx.Client(
        base_url=f"{sim.url}/api/v2", auth=("it.agent@acme.test/token", TOKEN), trust_env=False,
        timeout=5,
    ) as agent:  # fmt: skip
        assert update(agent, ticket["id"], status="open").status_code == 200
        removed = agent.request(
            "DELETE", f"/tickets/{ticket['id']}/tags.json", json={"tags": ["idv_pending"]}
        )
        assert removed.status_code == 200, removed.text
        agent_id = agent.get("/users/me.json").json()["user"]["id"]
    url: str | None = f"/tickets/{ticket['id']}/audits.json?page%5Bsize%5D=1"
    audits: list[dict[str, Any]] = []
    while url:
        page = api.get(url).json()
        assert len(page["audits"]) == 1
        audits += page["audits"]
        url = page["links"]["next"] if page["meta"]["has_more"] else None
    assert [a["id"] for a in audits] == sorted(a["id"] for a in audits) and len(audits) == 3
    _created, reopened, untagged = audits
    assert reopened["author_id"] == untagged["author_id"] == agent_id
    assert {"type": "Change", "field_name": "status", "value": "open",
            "previous_value": "hold"}.items() <= reopened["events"][0].items()  # fmt: skip
    tags = next(e for e in untagged["events"] if e.get("field_name") == "tags")
    assert "idv_pending" in tags["previous_value"] and "idv_pending" not in tags["value"]
    bad = api.get(f"/tickets/{ticket['id']}/audits.json", params={"page[after]": "x",
                                                                  "page[size]": 1})  # fmt: skip
    assert bad.status_code == 400
