"""Zendesk Support: polling by search, tickets, requesters, gate and outcome.

Writes are one ``PUT /tickets/{id}`` each: the internal note, the status and the tag changes travel
together, tags through ``additional_tags``/``remove_tags`` (never the replacing ``tags``), and
``safe_update`` makes Zendesk answer 409 instead of overwriting an agent's concurrent edit.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.action_requests import requested_action
from connectors.http import Fatal, NotFound, json_body, new_client, request, same_origin
from connectors.ticketing import MARKERS, OPEN_MARKERS, Person, Ticket
from connectors.zendesk import objects
from connectors.zendesk.config import ZendeskDeskConfig

SYSTEM = "zendesk"
SEARCH_PAGES = 10  # Zendesk serves at most 1,000 search results: 10 pages of 100
# Search indexes a change "within a few minutes": the marker scan starts this long before the
# newest change it has read, so a ticket indexed late is still found (re-reading is harmless).
INDEX_LAG = timedelta(minutes=10)
AUDIT_PAGES = 50  # of 100 audits: more updates than a ticket gets (5,000 comments is its cap)
INACTIVE = frozenset({"solved", "closed"})


def describe_error(response: httpx.Response) -> str:
    """Zendesk's error bodies come in two shapes; keep the code and description, not details."""
    body = response.json()
    if isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        return f"{first.get('code') or first.get('title', '')}: {first.get('detail', '')}".strip()
    error = body.get("error")
    if isinstance(error, dict):
        return f"{error.get('title', '')}: {error.get('message', '')}"
    return f"{error}: {body.get('description', '')}" if error else str(body.get("description", ""))


class ZendeskConnector:
    def __init__(
        self, name: str, config: ZendeskDeskConfig, timeout: float, deadline: float = 30.0
    ) -> None:
        self.name = name
        self.config = config
        self.client = new_client(
            f"{config.base}/api/v2",
            timeout,
            deadline=deadline,
            auth=(f"{config.email}/token", config.api_token.get_secret_value()),
            headers={"Content-Type": "application/json"},
        )
        self._markers = {config.tag_prefix + m: m for m in MARKERS}
        self._me: str | None = None  # the API user's id, read once
        self._me_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = request(self.client, SYSTEM, method, path, describe_error, **kwargs)
        return json_body(SYSTEM, response)

    # -- reading ---------------------------------------------------------------------------

    def find_flagged(
        self, cursor: str | None = None, *, gated: bool = False
    ) -> tuple[list[str], str | None]:
        # Repeated ``tags:`` terms are OR'ed by Zendesk search. A final outcome removes the
        # trigger; open gates are left out of the frequent poll, so its cost does not grow with
        # the verifications waiting on employees.
        prefix, opened = self.config.tag_prefix, sorted(OPEN_MARKERS)
        terms = ["type:ticket", "status<solved"]
        if gated:
            terms += [f"tags:{prefix}{m}" for m in opened]
        else:
            terms += [f"tags:{tag}" for tag in self.config.triggers]
            terms += [f"-tags:{prefix}{m}" for m in opened]
        found = self._search(terms)
        if not gated:  # action requests, whatever the ticket's marker (its own search: the
            # exclusions above would hide a request on a ticket still marked ``review``)
            asked = [f"tags:{tag}" for tag in objects.action_tags(self.config)]
            found += self._search(["type:ticket", "status<solved", *asked])
        return list(dict.fromkeys(found)), None  # search is complete in one poll

    def _search(self, terms: list[str]) -> list[str]:
        params: dict[str, Any] | None = {
            "query": " ".join(terms),
            "sort_by": "updated_at",
            "sort_order": "asc",
            "per_page": 100,
        }
        url = "/search.json"
        found: list[str] = []
        for _ in range(SEARCH_PAGES):
            page = self._call("GET", url, params=params)
            found += [str(r["id"]) for r in page.get("results", []) if "id" in r]
            next_page = page.get("next_page")
            if not next_page:
                break
            url, params = self._next(next_page), None
        return found

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        if not ticket_id.isdigit():
            return None
        try:
            # Sideloading the users brings the requester's record in the same call.
            body = self._call("GET", f"/tickets/{ticket_id}.json", params={"include": "users"})
        except NotFound:
            return None
        return self._ticket(body["ticket"], body.get("users") or [])

    def _ticket(self, raw: dict[str, Any], users: list[dict[str, Any]] | None = None) -> Ticket:
        tags = set(raw.get("tags") or [])
        reason = next((r for tag, r in self.config.triggers.items() if tag in tags), None)
        present = [m for tag, m in self._markers.items() if tag in tags]
        # If tags were edited by hand into an odd mix, an open marker wins: it holds the gate.
        marker = next((m for m in present if m in OPEN_MARKERS), present[0] if present else None)
        status = str(raw.get("status", ""))
        requester = raw.get("requester_id")
        do = objects.action_tag(self.config, "")
        asked = [t.removeprefix(do) for t in tags if t.startswith(do)]
        return Ticket(
            id=str(raw["id"]),
            display_id=f"#{raw['id']}",
            requester_id=str(requester) if requester is not None else None,
            reason=reason,
            marker=marker,
            status=status,
            active=status not in INACTIVE,
            writable=status != "closed",
            version=str(raw.get("updated_at", "")),
            held=status == self.config.gate_status,
            requester=next(
                (_person(u) for u in users or [] if str(u.get("id")) == str(requester)), None
            ),
            action_request=requested_action(asked, desk=self.name, ticket=str(raw["id"])),
            labels=tuple(sorted(tags - self._markers.keys())),
        )

    def find_marked(self, marker: str, cursor: str | None) -> tuple[list[str], str]:
        """Search, oldest change first, from ``INDEX_LAG`` before the newest change the last
        call read (``cursor``: an ISO time); the next cursor is the newest ``updated_at`` read."""
        # A closed ticket takes no writes: nothing to overturn there.
        terms = ["type:ticket", "status<closed", f"tags:{self.config.tag_prefix}{marker}"]
        start = _instant(cursor) if cursor else None
        if start is not None:
            since = datetime.fromtimestamp(start, UTC) - INDEX_LAG
            terms.append(f"updated>{since.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        params: dict[str, Any] | None = {
            "query": " ".join(terms), "sort_by": "updated_at", "sort_order": "asc",
            "per_page": 100,
        }  # fmt: skip
        url, found, newest = "/search.json", [], cursor or ""
        for _ in range(SEARCH_PAGES):
            page = self._call("GET", url, params=params)
            for row in page.get("results", []):
                if "id" in row:
                    found.append(str(row["id"]))
                    newest = max(newest, str(row.get("updated_at") or ""), key=_sort_key)
            if not page.get("next_page"):
                break
            url, params = self._next(page["next_page"]), None
        return list(dict.fromkeys(found)), newest

    def gate_lifted_by(self, ticket: Ticket) -> str | None:
        """The author of the newest ticket audit whose ``Change`` event moved ``status`` off the
        gate status or took the ``pending`` tag away (``GET /tickets/{id}/audits``, cursor
        pagination, oldest first)."""
        gate, tag = self.config.gate_status, self.config.tag_prefix + "pending"
        url: str = f"/tickets/{ticket.id}/audits.json"
        params: dict[str, Any] | None = {"page[size]": 100}
        author: str | None = None
        for _ in range(AUDIT_PAGES):
            page = self._call("GET", url, params=params)
            for audit in page.get("audits", []):
                if any(_lifts(e, gate, tag) for e in audit.get("events", [])):
                    author = str(audit.get("author_id"))
            following = (page.get("links") or {}).get("next")
            if not (page.get("meta") or {}).get("has_more") or not following:
                break
            url, params = self._next(following), None
        return author

    def _next(self, url: Any) -> str:
        """A ``next_page`` URL, followed (with our credentials) only on the desk's own origin."""
        if not same_origin(str(url), self.config.base):
            raise Fatal(SYSTEM, "next_page points outside the configured Zendesk account")
        return str(url)

    def _my_id(self) -> str:
        with self._me_lock:
            if self._me is None:
                self._me = str(self._call("GET", "/users/me.json")["user"]["id"])
            return self._me

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        # Zendesk lets an API caller set a comment's author, so authorship is a first filter
        # only: the seal on a gate note is what recovery trusts (worker/lifecycle/notes.py).
        me = self._my_id()
        found: list[str] = []
        url: str = f"/tickets/{ticket.id}/comments.json"
        # Newest first: however many comments pile up after Deskgate's last note, the pages read
        # start from the newest, so an old gate note cannot pass for the newest Deskgate note.
        params: dict[str, str] | None = {"sort_order": "desc"}
        for _ in range(SEARCH_PAGES):
            page = self._call("GET", url, params=params)
            params = None  # next_page carries them
            found += [
                str(c.get("body", ""))
                for c in page.get("comments", [])
                if not c.get("public", True)
                and str(c.get("author_id")) == me
                and text in str(c.get("body", ""))
            ]
            if not page.get("next_page"):
                break
            url = self._next(page["next_page"])
        return found

    def changed_at(self, person: Person, field: str) -> float | None:
        """For the e-mail and phone: the user's identity holding the value of record, created or
        updated when (a user's primary e-mail and phone are identities in Zendesk). Zendesk
        keeps no history of other fields that Deskgate can read: None."""
        kinds = {"email": ("email", person.email), "phone": ("phone_number", person.phone)}
        kind, wanted = kinds.get(field, ("", None))
        if not wanted:
            return None
        try:
            page = self._call("GET", f"/users/{person.id}/identities.json")
        except NotFound:
            return None
        stamps = [
            _instant(i.get(stamp))
            for i in page.get("identities", [])
            if i.get("type") == kind and _same_contact(str(i.get("value", "")), wanted, kind)
            for stamp in ("created_at", "updated_at")
        ]
        known = [s for s in stamps if s is not None]
        return max(known) if known else None

    def flagged_by(self, ticket: Ticket) -> str | None:
        """The ``author_id`` of the newest ticket audit whose tags event added a trigger tag.
        Zendesk keeps an audit (its author, its events) for every update; the newest page of
        them (``sort_order=desc``, up to 100) holds the flag unless a hundred updates came
        after it."""
        body = self._call(
            "GET",
            f"/tickets/{ticket.id}/audits.json",
            params={"sort_order": "desc", "per_page": 100},
        )
        for audit in body.get("audits") or []:
            for event in audit.get("events") or []:
                if event.get("field_name") != "tags" or event.get("type") not in TAG_EVENTS:
                    continue
                added = _tag_set(event.get("value")) - _tag_set(event.get("previous_value"))
                if added & self.config.triggers.keys() and audit.get("author_id") is not None:
                    return str(audit["author_id"])
        return None

    def get_requester(self, ticket: Ticket) -> Person | None:
        if ticket.requester is not None or ticket.requester_id is None:
            return ticket.requester  # sideloaded with the ticket
        try:
            return _person(self._call("GET", f"/users/{ticket.requester_id}.json")["user"])
        except NotFound:
            return None

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        """The author of the newest audit whose tag change added the action's tag: the agent
        whose update (a macro, a hand edit) asked. Zendesk records the updater as an audit's
        author, also for the tag changes its triggers make in the same update; an automation's
        audits carry Zendesk's own system user (-1), which is nobody: None."""
        tag = objects.action_tag(self.config, action)
        newest: tuple[int, str] | None = None
        url: str = f"/tickets/{ticket.id}/audits.json"
        params: dict[str, str] | None = {"page[size]": "100"}
        for _ in range(AUDIT_PAGES):
            page = self._call("GET", url, params=params)
            for audit in page.get("audits") or []:
                if _adds_tag(audit, tag):
                    seen = (int(audit.get("id") or 0), str(audit.get("author_id", "")))
                    newest = max(newest or seen, seen)
            more = (page.get("meta") or {}).get("has_more")
            next_url = (page.get("links") or {}).get("next") if more else None
            if not next_url:
                break
            url, params = self._next(next_url), None
        else:
            return None  # history not read to its end: the newest request may be unread
        return newest[1] if newest and newest[1].isdigit() and int(newest[1]) > 0 else None

    # -- writing ---------------------------------------------------------------------------

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        """The request's tag and the trigger's guard removed (every action tag when the request
        was ambiguous), so the next request pushes again; other tags stay."""
        c = self.config
        asked = [ticket.action_request] if ticket.action_request else objects.desk_actions(c)
        remove = [*(objects.action_tag(c, a) for a in asked), objects.action_sent_tag(c)]
        body: dict[str, Any] = {
            "comment": {"body": note, "public": False},
            "remove_tags": remove,
            "safe_update": True,
            "updated_stamp": ticket.version,
        }
        updated = self._call("PUT", f"/tickets/{ticket.id}.json", json={"ticket": body})
        return self._ticket(updated["ticket"])

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        return self._update(ticket, note, "pending", status=self.config.gate_status, consume=False)

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        # Release only a ticket still in our gate status: an agent's own status change stands.
        status = None
        if release and ticket.status == self.config.gate_status:
            status = self.config.release_status
        return self._update(ticket, note, marker, status=status, consume=marker not in OPEN_MARKERS)

    def _update(
        self, ticket: Ticket, note: str, marker: str, *, status: str | None, consume: bool
    ) -> Ticket:
        prefix = self.config.tag_prefix
        remove = [prefix + m for m in MARKERS if m != marker]
        if consume:  # the request is answered; re-adding the trigger asks for a new verification
            remove += list(self.config.triggers)
        body: dict[str, Any] = {
            "comment": {"body": note, "public": False},
            "additional_tags": [prefix + marker],
            "remove_tags": remove,
            "safe_update": True,
            "updated_stamp": ticket.version,
        }
        if status is not None:
            body["status"] = status
        updated = self._call("PUT", f"/tickets/{ticket.id}.json", json={"ticket": body})
        return self._ticket(updated["ticket"])


# A ticket audit's events that set tags: on the create, and on each update that changed them.
TAG_EVENTS = ("Create", "Change")


def _tag_set(value: Any) -> set[str]:
    """Tags as an audit event gives them: a list, or a space-separated string."""
    if isinstance(value, str):
        return set(value.split())
    return {str(tag) for tag in value} if isinstance(value, list) else set()


def _adds_tag(audit: dict[str, Any], tag: str) -> bool:
    """Does one of the audit's events change the tags so that ``tag`` was added?"""
    for event in audit.get("events") or []:
        if event.get("type") != "Change" or event.get("field_name") != "tags":
            continue
        if tag in _tag_set(event.get("value")) - _tag_set(event.get("previous_value")):
            return True
    return False


def _instant(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _sort_key(stamp: str) -> float:
    return _instant(stamp) or 0.0


def _lifts(event: dict[str, Any], gate: str, tag: str) -> bool:
    """A ticket audit's ``Change`` event that took the ticket out of the gate."""
    if event.get("type") != "Change":
        return False
    before, after = event.get("previous_value"), event.get("value")
    if event.get("field_name") == "status":
        return before == gate and after != gate
    if event.get("field_name") == "tags":
        return isinstance(before, list) and tag in before and tag not in (after or [])
    return False


def _same_contact(value: str, wanted: str, kind: str) -> bool:
    if kind == "email":
        return value.strip().lower() == wanted.strip().lower()
    return re.sub(r"\D", "", value) == re.sub(r"\D", "", wanted) != ""


def _person(user: dict[str, Any]) -> Person:
    fields = {k: str(v) for k, v in (user.get("user_fields") or {}).items() if v is not None}
    return Person(
        id=str(user["id"]),
        email=user.get("email") or None,
        phone=user.get("phone") or None,
        external_id=user.get("external_id") or None,
        fields=fields,
    )
