"""The Zendesk connector against servers on loopback: pagination links are followed only on the
account's own origin, so Deskgate's credentials never go to a host a response names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request

from connectors.http import Fatal, same_origin
from connectors.registry import SETTINGS
from connectors.ticketing import Ticket
from connectors.zendesk import connector as zendesk_connector
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector
from sandbox.common import Server, serve
from tests.conftest import settings_data


@pytest.fixture
def thief() -> Iterator[tuple[Server, list[dict[str, Any]]]]:
    """A server that records whatever reaches it, credentials included."""
    app, seen = Flask("thief"), []

    @app.route("/<path:anything>", methods=["GET"])
    def steal(anything: str) -> dict[str, Any]:
        seen.append({"path": anything, "authorization": request.headers.get("Authorization")})
        return {"results": [], "comments": [], "next_page": None}

    server = serve(app)
    yield server, seen
    server.stop()


def hostile_zendesk(next_page: str) -> Server:
    """A Zendesk whose every page links onward to ``next_page``."""
    app = Flask("zendesk")

    @app.get("/api/v2/search.json")
    def search() -> dict[str, Any]:
        return {"results": [{"id": 1}], "next_page": next_page, "count": 2}

    @app.get("/api/v2/users/me.json")
    def me() -> dict[str, Any]:
        return {"user": {"id": 7}}

    @app.get("/api/v2/tickets/<int:ticket>/comments.json")
    def comments(ticket: int) -> dict[str, Any]:
        note = {"body": "Deskgate verification: x", "public": False, "author_id": 7}
        return {"comments": [note], "next_page": next_page}

    @app.get("/api/v2/tickets/<int:ticket>/audits.json")
    def audits(ticket: int) -> dict[str, Any]:
        return {"audits": [], "meta": {"has_more": True}, "links": {"next": next_page}}

    return serve(app)


def connector(server: Server) -> ZendeskConnector:
    data = settings_data()
    data["desks"]["acme_zendesk"]["base_url"] = server.url
    config = SETTINGS(**data).desks["acme_zendesk"]
    assert isinstance(config, ZendeskDeskConfig)
    return ZendeskConnector("acme_zendesk", config, 5.0)


TICKET = Ticket("42", "#42", "7", "MFA reset", "pending", True, True, "hold", "1")


def test_a_next_page_on_another_host_is_not_followed(
    thief: tuple[Server, list[dict[str, Any]]],
) -> None:
    server, seen = thief
    zendesk = hostile_zendesk(f"{server.url}/api/v2/search.json?page=2")
    desk = connector(zendesk)
    with pytest.raises(Fatal, match="outside the configured Zendesk account"):
        desk.find_flagged(None)
    with pytest.raises(Fatal, match="outside the configured Zendesk account"):
        desk.own_notes(TICKET, "Deskgate verification:")
    with pytest.raises(Fatal, match="outside the configured Zendesk account"):
        desk.requested_by(TICKET, "unlock")
    assert seen == []  # not one request, so no credentials
    desk.close()
    zendesk.stop()


def test_a_next_page_on_the_accounts_own_origin_is_followed() -> None:
    own: list[str] = []
    app = Flask("zendesk")

    @app.get("/api/v2/search.json")
    def search() -> dict[str, Any]:
        page = request.args.get("page", "1")
        own.append(page)
        more = f"{request.host_url}api/v2/search.json?page=2" if page == "1" else None
        return {"results": [{"id": int(page)}], "next_page": more}

    zendesk = serve(app)
    found, _ = connector(zendesk).find_flagged(None)
    # Two searches, each paged: flagged tickets, then action requests.
    assert found == ["1", "2"] and own == ["1", "2"] * 2
    zendesk.stop()


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("/api/v2/search.json?page=2", True),
        ("https://acme.zendesk.com/api/v2/search.json?page=2", True),
        ("https://acme.zendesk.com:443/api/v2/x", True),  # the default port, spelled out
        ("https://acme.zendesk.com:8443/api/v2/x", False),
        ("http://acme.zendesk.com/api/v2/x", False),
        ("https://evil.example/api/v2/x", False),
        ("https://acme.zendesk.com.evil.example/api/v2/x", False),
        ("//evil.example/api/v2/x", False),
    ],
)
def test_same_origin(url: str, same: bool) -> None:
    assert same_origin(url, "https://acme.zendesk.com") is same


def test_who_asked_is_the_author_of_the_newest_audit_that_added_the_tag() -> None:
    """Across cursor pages: an update that kept the tag (it was there already) or removed it
    asked for nothing; the newest that added it names who asked (here after a removal and a
    re-add). Tags come as lists, or as one space-separated string."""

    def tags(author: int, audit: int, before: Any, after: Any) -> dict[str, Any]:
        event = {"type": "Change", "field_name": "tags", "value": after, "previous_value": before}
        return {"id": audit, "author_id": author, "events": [{"type": "Comment"}, event]}

    pages = [
        [tags(10, 1, [], ["idv_do_unlock"]),
         tags(11, 2, ["idv_do_unlock"], ["idv_do_unlock", "x"])],
        [tags(12, 3, "idv_do_unlock x", "x"), tags(13, 4, "x", "x idv_do_unlock"),
         tags(14, 5, "x idv_do_unlock", "x idv_do_unlock vip")],
    ]  # fmt: skip
    app = Flask("zendesk")

    @app.get("/api/v2/tickets/<int:ticket>/audits.json")
    def audits(ticket: int) -> dict[str, Any]:
        page = 1 if request.args.get("page[after]") == "p2" else 0
        more = page == 0
        following = f"{request.host_url}api/v2/tickets/{ticket}/audits.json?page[after]=p2"
        return {"audits": pages[page], "meta": {"has_more": more},
                "links": {"next": following if more else None}}  # fmt: skip

    zendesk = serve(app)
    desk = connector(zendesk)
    assert desk.requested_by(TICKET, "unlock") == "13"
    assert desk.requested_by(TICKET, "reset_mfa") is None
    pages[1].append(tags(-1, 6, "x", "x idv_do_unlock"))  # an automation: Zendesk's system user
    assert desk.requested_by(TICKET, "unlock") is None
    pages[1].pop()
    with pytest.MonkeyPatch.context() as patch:  # a history longer than Deskgate reads
        patch.setattr(zendesk_connector, "AUDIT_PAGES", 1)
        assert desk.requested_by(TICKET, "unlock") is None
    desk.close()
    zendesk.stop()


def test_who_lifted_a_gate_is_the_newest_lifting_audits_author_across_cursor_pages() -> None:
    """Ticket audits, oldest first, one per page here: the newest audit whose Change took the
    status off hold or dropped the pending tag names the agent; other changes do not."""
    audits = [
        {"id": 1, "author_id": 7, "events": [
            {"type": "Change", "field_name": "status", "value": "hold", "previous_value": "new"},
        ]},
        {"id": 2, "author_id": 501, "events": [
            {"type": "Change", "field_name": "status", "value": "open", "previous_value": "hold"},
        ]},
        {"id": 3, "author_id": 7, "events": [
            {"type": "Change", "field_name": "tags", "value": ["idv_pending"],
             "previous_value": []},
        ]},
        {"id": 4, "author_id": 502, "events": [
            {"type": "Comment", "body": "status hold -> open", "public": False},
            {"type": "Change", "field_name": "tags", "value": ["x"],
             "previous_value": ["idv_pending", "x"]},
        ]},
        {"id": 5, "author_id": 503, "events": [
            {"type": "Change", "field_name": "subject", "value": "a", "previous_value": "b"},
        ]},
    ]  # fmt: skip
    app = Flask("zendesk")

    @app.get("/api/v2/tickets/<int:ticket>/audits.json")
    def pages(ticket: int) -> dict[str, Any]:
        assert request.args["page[size]"] == "100"
        start = int(request.args.get("page[after]", "0"))
        more = start + 1 < len(audits)
        nxt = f"{request.host_url}api/v2/tickets/{ticket}/audits.json?page%5Bsize%5D=100"
        return {
            "audits": audits[start : start + 1],
            "meta": {"has_more": more, "after_cursor": str(start + 1)},
            "links": {"next": f"{nxt}&page%5Bafter%5D={start + 1}" if more else None},
        }

    zendesk = serve(app)
    try:
        assert connector(zendesk).gate_lifted_by(TICKET) == "502"
        del audits[3:]
        assert connector(zendesk).gate_lifted_by(TICKET) == "501"
        del audits[1:]
        assert connector(zendesk).gate_lifted_by(TICKET) is None
    finally:
        zendesk.stop()


def test_the_marker_scan_searches_from_before_the_newest_change_it_read() -> None:
    """Search indexes late: each scan starts ten minutes before the newest ``updated_at`` the
    last one read, and leaves closed tickets (no writes) out."""
    queries: list[str] = []
    app = Flask("zendesk")

    @app.get("/api/v2/search.json")
    def search() -> dict[str, Any]:
        queries.append(request.args["query"])
        rows = [{"id": 3, "updated_at": "2026-11-26T10:05:00Z"},
                {"id": 4, "updated_at": "2026-11-26T10:00:00Z"}]  # fmt: skip
        return {"results": rows, "next_page": None}

    zendesk = serve(app)
    try:
        desk = connector(zendesk)
        found, cursor = desk.find_marked("verified", None)
        assert (found, cursor) == (["3", "4"], "2026-11-26T10:05:00Z")
        desk.find_marked("verified", cursor)
    finally:
        zendesk.stop()
    assert queries == [
        "type:ticket status<closed tags:idv_verified",
        "type:ticket status<closed tags:idv_verified updated>2026-11-26T09:55:00Z",
    ]
