"""The Zendesk connector against the Zendesk simulator (a real HTTP server): finding flagged
tickets, reading one with its requester, and the two writes (gate, outcome) with Safe Update."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.http import Conflict
from connectors.registry import SETTINGS
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector
from sandbox import zendesk as sim
from sandbox.common import Server, serve
from tests.conftest import settings_data

SIM = sim.ZendeskSimConfig(triggers_enabled=False, user_age_days=30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(
        base_url=f"{server.url}/api/v2", auth=(f"{SIM.email}/token", SIM.api_token), timeout=10
    )
    httpx.post(f"{server.url}/_sandbox/reset").raise_for_status()
    yield client
    client.close()


@pytest.fixture
def desk(server: Server) -> Iterator[ZendeskConnector]:
    data = settings_data()
    data["desks"]["acme_zendesk"].update(
        base_url=server.url, email=SIM.email, api_token=SIM.api_token,
        triggers={"idv_mfa_reset": "MFA reset"},
    )  # fmt: skip
    config = SETTINGS(**data).desks["acme_zendesk"]
    assert isinstance(config, ZendeskDeskConfig)
    connector = ZendeskConnector("acme_zendesk", config, 5.0)
    yield connector
    connector.close()


def ticket(api: httpx.Client, email: str, tags: list[str], **extra: Any) -> str:
    body = {"ticket": {"subject": "MFA", "comment": {"body": "help"}, "tags": tags,
                       "requester": {"name": "Jane", "email": email}, **extra}}  # fmt: skip
    resp = api.post("/tickets.json", json=body)
    resp.raise_for_status()
    return str(resp.json()["ticket"]["id"])


def test_the_poll_finds_flagged_tickets_not_yet_gated_and_the_scan_finds_gated_ones(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    flagged = ticket(api, "a@acme.test", ["idv_mfa_reset"])
    gated = ticket(api, "b@acme.test", ["idv_mfa_reset", "idv_pending"])
    ticket(api, "c@acme.test", ["other"])
    ticket(api, "d@acme.test", ["idv_mfa_reset"], status="solved")
    assert desk.find_flagged(None, gated=False) == ([flagged], None)
    assert desk.find_flagged(None, gated=True) == ([gated], None)


def test_the_poll_pages_through_more_than_a_page_of_results(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    made = [ticket(api, f"p{i}@acme.test", ["idv_mfa_reset"]) for i in range(130)]
    found, cursor = desk.find_flagged(None, gated=False)
    assert sorted(found, key=int) == made and cursor is None


def test_a_ticket_comes_with_its_requesters_record_of_identity(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset"]))
    assert t is not None and t.reason == "MFA reset" and t.marker is None and t.active
    assert t.requester is not None and t.requester.email == "jane@acme.test"
    assert desk.get_ticket("999999") is None and desk.get_ticket("../users") is None


def test_the_gate_keeps_the_agents_tags_and_writes_an_internal_note(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset", "vip"]))
    assert t is not None
    gated = desk.gate(t, "gate note")
    assert gated.marker == "pending" and gated.status == "hold" and gated.version != t.version
    raw = api.get(f"/tickets/{t.id}.json").json()["ticket"]
    assert {"idv_mfa_reset", "vip", "idv_pending"} <= set(raw["tags"])
    [note] = [c for c in api.get(f"/tickets/{t.id}/comments.json").json()["comments"]
              if c["body"] == "gate note"]  # fmt: skip
    assert note["public"] is False


def test_writes_against_a_stale_ticket_conflict(api: httpx.Client, desk: ZendeskConnector) -> None:
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset"]))
    assert t is not None
    api.put(f"/tickets/{t.id}.json", json={"ticket": {"subject": "edited"}}).raise_for_status()
    with pytest.raises(Conflict):
        desk.gate(t, "gate note")
    fresh = desk.get_ticket(t.id)
    assert fresh is not None and desk.gate(fresh, "gate note").marker == "pending"


def test_a_final_outcome_consumes_the_trigger_and_releases_only_what_was_held(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset"]))
    assert t is not None
    done = desk.record(desk.gate(t, "gate"), "verified", "VERIFIED", release=True)
    assert done.marker == "verified" and done.status == "open" and done.reason is None
    raw = api.get(f"/tickets/{t.id}.json").json()["ticket"]
    assert "idv_pending" not in raw["tags"] and "idv_mfa_reset" not in raw["tags"]

    # An agent who moved the ticket to pending keeps it there: only "hold" is released.
    t2 = desk.get_ticket(ticket(api, "joe@acme.test", ["idv_mfa_reset"]))
    assert t2 is not None
    held = desk.gate(t2, "gate")
    api.put(f"/tickets/{t2.id}.json", json={"ticket": {"status": "pending"}}).raise_for_status()
    moved = desk.get_ticket(t2.id)
    assert moved is not None and held.version != moved.version
    assert desk.record(moved, "failed", "FAILED", release=True).status == "pending"


def test_a_contacts_age_comes_from_the_users_identities(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset"]))
    assert t is not None and t.requester is not None
    old = desk.changed_at(t.requester, "email")
    assert old is not None
    user = t.requester.id
    api.put(f"/users/{user}.json", json={"user": {"phone": "+1 415 555 0134"}}).raise_for_status()
    fresh = desk.get_ticket(t.id)
    assert fresh is not None and fresh.requester is not None
    phone = desk.changed_at(fresh.requester, "phone")
    assert phone is not None and phone - old > 29 * 86400  # just set; the e-mail is 30 days old
    assert desk.changed_at(fresh.requester, "email") == old
    assert desk.changed_at(fresh.requester, "external_id") is None  # no history to read


def test_deskgates_own_notes_are_read_newest_first_however_many_follow(
    api: httpx.Client, desk: ZendeskConnector
) -> None:
    """A flood of notes after Deskgate's outcome must not leave an older gate note looking like
    the newest thing Deskgate wrote: pages are read from the newest, so beyond a thousand
    comments nothing of Deskgate's is found at all (and recovery refuses)."""
    t = desk.get_ticket(ticket(api, "jane@acme.test", ["idv_mfa_reset"]))
    assert t is not None
    done = desk.record(desk.gate(t, "gate\nDeskgate verification: 1"), "review",
                       "review\nDeskgate verification: 1", release=False)  # fmt: skip
    assert desk.own_notes(done, "Deskgate verification:") == [
        "review\nDeskgate verification: 1",
        "gate\nDeskgate verification: 1",
    ]
    agent = api.post(
        "/users.json", json={"user": {"name": "A", "email": "a@acme.test", "role": "agent"}}
    ).json()["user"]["id"]
    for n in range(1000):
        note = {"body": f"note {n}", "public": False, "author_id": agent}
        api.put(f"/tickets/{t.id}.json", json={"ticket": {"comment": note}}).raise_for_status()
    assert desk.own_notes(done, "Deskgate verification:") == []


def test_who_flagged_is_the_author_of_the_newest_audit_that_added_a_trigger_tag(
    server: Server, api: httpx.Client, desk: ZendeskConnector
) -> None:
    """Zendesk's ticket audits name who made each update: the flagger is the author of the
    newest one whose tags event added a trigger tag, whatever came after it (another tag, a
    comment naming someone else) and whatever the ticket says."""
    agent = httpx.Client(
        base_url=f"{server.url}/api/v2",
        auth=(f"{SIM.people_agent_email}/token", SIM.api_token),
        timeout=10,
    )
    with agent:
        agent_id = str(agent.get("/users/me.json").json()["user"]["id"])
        created = ticket(api, "e@acme.test", ["idv_mfa_reset"])  # flagged on creation
        plain = ticket(api, "f@acme.test", ["other"], comment={"body": "flagged by the CEO"})
        agent.put(f"/tickets/{plain}/tags.json", json={"tags": ["idv_mfa_reset"]})
        api.put(f"/tickets/{plain}/tags.json", json={"tags": ["unrelated"]})
    me = str(api.get("/users/me.json").json()["user"]["id"])
    read = [desk.get_ticket(t) for t in (created, plain)]
    assert all(t is not None for t in read)
    assert [desk.flagged_by(t) for t in read if t is not None] == [me, agent_id]
    never = desk.get_ticket(ticket(api, "g@acme.test", ["other"]))
    assert never is not None and desk.flagged_by(never) is None
