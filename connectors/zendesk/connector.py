"""Zendesk Support: polling by search, tickets, requesters, gate and outcome.

Writes are one ``PUT /tickets/{id}`` each: the internal note, the status and the tag changes travel
together, tags through ``additional_tags``/``remove_tags`` (never the replacing ``tags``), and
``safe_update`` makes Zendesk answer 409 instead of overwriting an agent's concurrent edit.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

import httpx

from connectors.http import Fatal, NotFound, json_body, new_client, request, same_origin
from connectors.ticketing import MARKERS, OPEN_MARKERS, Person, Ticket
from connectors.zendesk.config import ZendeskDeskConfig

SYSTEM = "zendesk"
SEARCH_PAGES = 10  # Zendesk serves at most 1,000 search results: 10 pages of 100
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
        return list(dict.fromkeys(found)), None  # search is complete in one poll

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
            requester=next(
                (_person(u) for u in users or [] if str(u.get("id")) == str(requester)), None
            ),
            labels=tuple(sorted(tags - self._markers.keys())),
        )

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
        # only: the seal on a gate note is what recovery trusts (worker/notes.py).
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

    def get_requester(self, ticket: Ticket) -> Person | None:
        if ticket.requester is not None or ticket.requester_id is None:
            return ticket.requester  # sideloaded with the ticket
        try:
            return _person(self._call("GET", f"/users/{ticket.requester_id}.json")["user"])
        except NotFound:
            return None

    # -- writing ---------------------------------------------------------------------------

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


def _instant(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
