"""A faithful Zendesk Support API simulator, served as a real HTTP server.

It mimics what Deskgate relies on: API-token Basic auth, the ``{"ticket": ...}`` envelopes and
Zendesk's error bodies, the ``.json`` suffix, ticket updates with audits (one per update, by its
author, listed oldest first with cursor pagination), the non-destructive tag
operations, Safe Update (409), the closed-ticket rule (422), the search query subset with its
1,000-result cap, and triggers in Zendesk's own shape (``/api/v2/triggers``), evaluated on every
ticket create and update as Zendesk does, whose ``notification_webhook`` actions POST to the
webhook they name, signed with that webhook's own secret. The account's configuration (webhooks,
trigger categories, macros, statuses: ``sandbox/zendesk_admin.py``) starts empty: only what is
made through the API fires, as ``deskgate setup`` makes it. Admin-only endpoints answer 403 to an
agent.
Where the real service is ambiguous, the simulator is the stricter of the readings, so that client
bugs surface here rather than in production.

Deliberate simplifications: search has no index lag; there is one account, whose API token works
for each of its staff: Deskgate's API user (an agent), an admin and another agent (people's
clicks), created on start and on reset. An agent whose ``ticket_restriction`` is set may change
only the tickets assigned to them.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import hmac
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import zendesk_triggers as triggers
from sandbox.common import CONTROL_PREFIX, Call, Controls, WebhookClient, on_stop
from sandbox.options import Wiring
from sandbox.simulator import Simulator
from sandbox.zendesk_admin import WEBHOOK_PAGE, AdminError, ZendeskAccount
from sandbox.zendesk_driver import ADMIN, AGENT, DESK, PEOPLE_AGENT, TRIGGERS, ZendeskDriver
from sandbox.zendesk_search import SearchQuery, compare, date_bound, parse_instant

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

API_PREFIX = "/api/v2/"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
ROLES = ("end-user", "agent", "admin")
SEARCH_RESULT_LIMIT = 1000  # Zendesk search never serves more than this per query
MAX_PER_PAGE = 100
MAX_COMMENTS = 5000
DEFAULT_RATE_LIMIT = 700  # requests/minute of an Enterprise plan
FIRST_USER_ID = 1000
FIRST_COMMENT_ID = 100_000
FIRST_IDENTITY_ID = 300_000
FIRST_AUDIT_ID = 500_000
ACCOUNT_ID = 9_000_001
FIRST_TRIGGER_ID = 360_000_001
WEBHOOK_TIMEOUT = 10.0
RETRY_BACKOFF = (0.2, 0.5, 1.0)  # one pause before each of the three retries
READ_ONLY_TICKET_KEYS = ("id", "url", "created_at", "updated_at")
CLOSED_MESSAGE = "Status: closed prevents ticket update"
FORBIDDEN = (
    "You do not have access to this page. Please contact the account owner of this help desk "
    "for further help."
)
CONFLICT_MESSAGE = (
    "Safe Update prevented the update due to outdated ticket data. "
    "Please fetch the latest ticket data and try again."
)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's webhook signature: base64(HMAC-SHA256(key=secret, msg=timestamp + body)).

    The secret string is the key bytes verbatim (not base64-decoded), as Zendesk's docs do.
    """
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class ZendeskSimConfig:
    email: str = "agent@acme.test"  # Deskgate's API user, an agent
    api_token: str = "sandbox-zendesk-token"  # the account's API token: any staff e-mail uses it
    admin_email: str = "admin@acme.test"  # the admin ``deskgate setup`` uses
    people_agent_email: str = "it.agent@acme.test"  # the agent whose clicks the driver makes
    # The signing secret the first webhook made gets (later ones get random secrets), so tests
    # and benchmarks can sign pushes of their own.
    webhook_secret: str = "sandbox-zendesk-signing-secret"
    triggers_enabled: bool = True  # the sandbox's switch: off, no trigger fires (push off)
    # Users made through the API appear this many days old (their identities too), as an
    # employee's profile is: only later changes are new. 0 = made now.
    user_age_days: float = 0.0


# -- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """Raised anywhere in a request; rendered as a classic Zendesk error body."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None = None,
        details: dict[str, list[dict[str, str]]] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error}
        if self.description is not None:
            out["description"] = self.description
        if self.details is not None:
            out["details"] = self.details
        return out


def invalid(field_name: str, description: str, error: str = "InvalidValue") -> ApiError:
    """422 RecordInvalid naming one field, the shape Zendesk uses for validation errors."""
    return ApiError(
        422,
        "RecordInvalid",
        "Record validation errors",
        {field_name: [{"description": description, "error": error}]},
    )


def not_found() -> ApiError:
    return ApiError(404, "RecordNotFound", "Not found")


def _json(payload: Any, status: int = 200) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    resp.headers["Content-Type"] = "application/json; charset=utf-8"
    return resp


def error_response(status: int, message: str) -> Response:
    """Zendesk-style bodies for statuses produced by the sandbox controls (faults, 429...)."""
    if status == 401:
        return _json({"error": "Couldn't authenticate you"}, 401)
    if status == 404:
        return _json(not_found().body(), 404)
    if status == 429:
        body = {
            "error": "APIRateLimitExceeded",
            "description": "Number of allowed API requests per minute exceeded",
        }
        return _json(body, 429)
    names = {400: "InvalidParameter", 409: "UpdateConflict", 422: "RecordInvalid"}
    name = names.get(status, "ServiceUnavailable" if status >= 500 else "Error")
    return _json({"error": name, "description": message}, status)


# -- time -----------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _fmt(ts: datetime) -> str:
    return ts.strftime(TIMESTAMP_FORMAT)


# -- records --------------------------------------------------------------------------------


@dataclass
class User:
    id: int
    name: str
    email: str | None
    phone: str | None
    external_id: str | None
    role: str
    user_fields: dict[str, Any]
    verified: bool
    created_at: datetime
    updated_at: datetime
    ticket_restriction: str | None = None  # "assigned": may change only their own tickets

    def render(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base}/api/v2/users/{self.id}.json",
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "shared_phone_number": None if self.phone is None else False,
            "external_id": self.external_id,
            "role": self.role,
            "ticket_restriction": self.ticket_restriction,
            "user_fields": dict(self.user_fields),
            "verified": self.verified,
            "active": True,
            "created_at": _fmt(self.created_at),
            "updated_at": _fmt(self.updated_at),
        }


@dataclass
class Identity:
    """A user's e-mail or phone as Zendesk keeps it: ``GET /users/{id}/identities``."""

    id: int
    user_id: int
    type: str  # "email" or "phone_number" here
    value: str
    primary: bool
    created_at: datetime
    updated_at: datetime

    def render(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base}/api/v2/users/{self.user_id}/identities/{self.id}.json",
            "user_id": self.user_id,
            "type": self.type,
            "value": self.value,
            "primary": self.primary,
            "verified": self.type == "email",
            "verification_method": "low" if self.type == "email" else "none",
            "undeliverable_count": 0,
            "deliverable_state": "deliverable",
            "created_at": _fmt(self.created_at),
            "updated_at": _fmt(self.updated_at),
        }


@dataclass
class Comment:
    id: int
    author_id: int
    body: str
    html_body: str
    public: bool
    audit_id: int
    created_at: datetime

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "Comment",
            "author_id": self.author_id,
            "body": self.body,
            "html_body": self.html_body,
            "plain_body": self.body,
            "public": self.public,
            "audit_id": self.audit_id,
            "attachments": [],
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": _fmt(self.created_at),
        }


@dataclass
class Ticket:
    id: int
    subject: str | None
    description: str
    status: str
    tags: list[str]
    requester_id: int
    submitter_id: int
    assignee_id: int | None
    external_id: str | None
    custom_fields: dict[int, Any]
    created_at: datetime
    updated_at: datetime
    version: int = 1  # internal; bumps on every change (updated_at has 1 s precision)
    comments: list[Comment] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    def render(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base}/api/v2/tickets/{self.id}.json",
            "external_id": self.external_id,
            "subject": self.subject,
            "raw_subject": self.subject,
            "description": self.description,
            "status": self.status,
            "tags": list(self.tags),
            "requester_id": self.requester_id,
            "submitter_id": self.submitter_id,
            "assignee_id": self.assignee_id,
            "custom_fields": [{"id": k, "value": v} for k, v in sorted(self.custom_fields.items())],
            "is_public": any(c.public for c in self.comments),
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": _fmt(self.created_at),
            "updated_at": _fmt(self.updated_at),
            "generated_timestamp": int(self.updated_at.timestamp()),
        }


@dataclass
class _NewComment:
    author_id: int
    body: str
    html_body: str
    public: bool


@dataclass
class WebhookJob:
    """One trigger firing: the exact signed bytes and headers, retried as one invocation."""

    url: str
    ticket_id: int
    body: bytes
    headers: dict[str, str]
    generation: int
    trigger_id: int = 0
    webhook_id: str = ""


# -- input helpers --------------------------------------------------------------------------


def normalize_tags(value: Any, field_name: str = "tags") -> list[str]:
    """Zendesk tags are lower-case words: a string holding spaces is several tags."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise invalid(field_name, f"{field_name}: must be an array of strings")
    return [tag.lower() for item in items for tag in item.split()]


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise invalid(key, f"{key.capitalize()}: is invalid")


def _html_from_text(text: str) -> str:
    return f'<div class="zd-comment" dir="auto">{html.escape(text).replace(chr(10), "<br>")}</div>'


def _text_from_html(markup: str) -> str:
    text = re.sub(r"<br\s*/?>|</p>", "\n", markup, flags=re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


# -- state ----------------------------------------------------------------------------------


class ZendeskState:
    """All simulator data, guarded by one lock because the server is threaded.

    Public methods take the lock themselves and return rendered dicts, so no mutable record
    escapes it.
    """

    def __init__(self, config: ZendeskSimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.triggers_enabled = config.triggers_enabled
        # The account's configuration: it survives ``reset`` unless asked (a stack's set-up).
        self.account = ZendeskAccount(config.webhook_secret)
        self.triggers: list[dict[str, Any]] = []  # in firing order
        self._next_trigger = FIRST_TRIGGER_ID
        self.deliveries: list[dict[str, Any]] = []
        self.webhooks = WebhookClient(WEBHOOK_TIMEOUT)  # shared by the delivery threads
        self.generation = 0  # bumps on reset so in-flight deliveries stop recording
        self.users: dict[int, User] = {}
        # Lower-cased e-mail -> the first user holding it ("" for users without one): an index,
        # so finding a requester by e-mail does not scan every user.
        self._by_email: dict[str, int] = {}
        self.tickets: dict[int, Ticket] = {}
        self.agent_id = FIRST_USER_ID
        self._next_user = FIRST_USER_ID
        self._next_ticket = 1
        self._next_comment = FIRST_COMMENT_ID
        self.identities: dict[int, list[Identity]] = {}
        self._next_identity = FIRST_IDENTITY_ID
        self._next_audit = FIRST_AUDIT_ID
        self._next_event = 1
        self._clear()

    def _clear(self) -> None:
        self.users.clear()
        self._by_email.clear()
        self.tickets.clear()
        self.deliveries.clear()
        self.generation += 1
        self._next_user = FIRST_USER_ID
        self._next_ticket = 1
        self._next_comment = FIRST_COMMENT_ID
        self.identities = {}
        self._next_identity = FIRST_IDENTITY_ID
        self._next_audit = FIRST_AUDIT_ID
        self._next_event = 1
        agent = self._add_user(
            name="Deskgate", email=self.config.email, role="agent", verified=True
        )
        self.agent_id = agent.id
        self._add_user(name="Sandbox Admin", email=self.config.admin_email, role="admin")
        self._add_user(name="IT Agent", email=self.config.people_agent_email, role="agent")

    def reset(self, account: bool = False) -> None:
        """Forget tickets, users and deliveries; the account's configuration (webhooks,
        triggers, macros) survives unless ``account``."""
        with self.lock:
            self._clear()
            if account:
                self.account.clear()
                self.account.hold_enabled = True
                self.triggers.clear()

    def staff(self, email: str) -> User | None:
        """The agent or admin with this e-mail (an API token authenticates staff only)."""
        with self.lock:
            user = self._user_by_email(email)
            return user if user is not None and user.role != "end-user" else None

    # -- users ------------------------------------------------------------------------------

    def _add_user(
        self,
        *,
        name: str,
        email: str | None,
        role: str = "end-user",
        phone: str | None = None,
        external_id: str | None = None,
        user_fields: dict[str, Any] | None = None,
        verified: bool = False,
    ) -> User:
        now = _now()
        now = now - timedelta(days=self.config.user_age_days)
        user = User(
            id=self._next_user,
            name=name,
            email=email,
            phone=phone,
            external_id=external_id,
            role=role,
            user_fields=dict(user_fields or {}),
            verified=verified,
            created_at=now,
            updated_at=now,
        )
        self._next_user += 1
        self.users[user.id] = user
        self._by_email.setdefault((email or "").lower(), user.id)
        if email:
            self._add_identity(user.id, "email", email, primary=True, at=now)
        if phone:
            self._add_identity(user.id, "phone_number", phone, primary=True, at=now)
        return user

    def _add_identity(
        self, user_id: int, kind: str, value: str, *, primary: bool, at: datetime
    ) -> Identity:
        identity = Identity(self._next_identity, user_id, kind, value, primary, at, at)
        self._next_identity += 1
        self.identities.setdefault(user_id, []).append(identity)
        return identity

    def list_identities(self, user_id: int, base: str) -> dict[str, Any]:
        with self.lock:
            if user_id not in self.users:
                raise not_found()
            found = [i.render(base) for i in self.identities.get(user_id, [])]
            return {"identities": found, "next_page": None, "previous_page": None,
                    "count": len(found)}  # fmt: skip

    def create_identity(self, user_id: int, payload: dict[str, Any], base: str) -> dict[str, Any]:
        """What an agent does to give a user another e-mail or phone."""
        kind, value = payload.get("type"), payload.get("value")
        if kind not in ("email", "phone_number"):
            raise invalid("type", "Type: is invalid")
        if not isinstance(value, str) or not value.strip():
            raise invalid("value", "Value: cannot be blank", "BlankValue")
        with self.lock:
            if user_id not in self.users:
                raise not_found()
            if kind == "email" and self._user_by_email(value) is not None:
                raise invalid("value", f"Value: {value} is already being used", "DuplicateValue")
            first = not any(i.type == kind for i in self.identities.get(user_id, []))
            identity = self._add_identity(user_id, kind, value.strip(), primary=first, at=_now())
            if first:
                self._apply_primary(identity)
            return identity.render(base)

    def make_primary(self, user_id: int, identity_id: int, base: str) -> dict[str, Any]:
        """The identity becomes the user's primary of its type: their e-mail (or phone)."""
        with self.lock:
            owned = self.identities.get(user_id, [])
            identity = next((i for i in owned if i.id == identity_id), None)
            if identity is None:
                raise not_found()
            now = _now()
            for other in owned:
                if other.type == identity.type and other.primary and other is not identity:
                    other.primary, other.updated_at = False, now
            if not identity.primary:
                identity.primary, identity.updated_at = True, now
            self._apply_primary(identity)
            return {"identities": [i.render(base) for i in owned]}

    def _apply_primary(self, identity: Identity) -> None:
        user = self.users[identity.user_id]
        if identity.type == "email":
            self._by_email.pop((user.email or "").lower(), None)
            user.email = identity.value
            self._by_email.setdefault(identity.value.lower(), user.id)
        else:
            user.phone = identity.value
        user.updated_at = max(_now(), user.updated_at + timedelta(seconds=1))

    def _set_phone(self, user: User, phone: str | None) -> None:
        """``phone`` on the user record is its primary phone identity."""
        owned = self.identities.setdefault(user.id, [])
        current = next((i for i in owned if i.type == "phone_number" and i.primary), None)
        if phone is None:
            if current is not None:
                owned.remove(current)
        elif current is None:
            self._add_identity(user.id, "phone_number", phone, primary=True, at=_now())
        elif current.value != phone:
            current.value, current.updated_at = phone, _now()
        user.phone = phone

    def _drop_user(self, user_id: int) -> None:
        """Undo ``_add_user`` of the newest users (a rejected ticket's requester)."""
        user = self.users.pop(user_id, None)
        self.identities.pop(user_id, None)
        if user is not None:
            key = (user.email or "").lower()
            if self._by_email.get(key) == user_id:  # no older user holds this e-mail
                del self._by_email[key]

    def _user_by_email(self, email: str) -> User | None:
        user_id = self._by_email.get(email.strip().lower())
        return None if user_id is None else self.users[user_id]

    def _check_external_id(self, external_id: str | None, own_id: int | None) -> None:
        if external_id is None:
            return
        for user in self.users.values():
            same = (user.external_id or "").lower() == external_id.lower()
            if same and user.id != own_id:
                raise invalid(
                    "external_id",
                    f"External: {external_id} has already been taken",
                    "DuplicateValue",
                )

    @staticmethod
    def _role(payload: dict[str, Any], default: str) -> str:
        role = payload.get("role", default)
        if role not in ROLES:
            raise invalid("role", f"Role: {role} is not valid")
        return str(role)

    @staticmethod
    def _user_fields(payload: dict[str, Any]) -> dict[str, Any]:
        fields = payload.get("user_fields") or {}
        if not isinstance(fields, dict):
            raise invalid("user_fields", "User fields: must be an object")
        return fields

    def create_user(self, payload: dict[str, Any], base: str) -> dict[str, Any]:
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name", "Name: cannot be blank", "BlankValue")
        email = _optional_str(payload, "email")
        with self.lock:
            if email is not None and self._user_by_email(email) is not None:
                raise invalid(
                    "email",
                    f"Email: {email} is already being used by another user",
                    "DuplicateValue",
                )
            external_id = _optional_str(payload, "external_id")
            self._check_external_id(external_id, None)
            user = self._add_user(
                name=name,
                email=email,
                role=self._role(payload, "end-user"),
                phone=_optional_str(payload, "phone"),
                external_id=external_id,
                user_fields=self._user_fields(payload),
                verified=bool(payload.get("verified", False)),
            )
            return user.render(base)

    def get_user(self, user_id: int, base: str) -> dict[str, Any]:
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                raise not_found()
            return user.render(base)

    def update_user(self, user_id: int, payload: dict[str, Any], base: str) -> dict[str, Any]:
        """``email`` is silently ignored: Zendesk only takes the primary e-mail on create."""
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                raise not_found()
            if "name" in payload:
                name = payload["name"]
                if not isinstance(name, str) or not name.strip():
                    raise invalid("name", "Name: cannot be blank", "BlankValue")
                user.name = name
            if "phone" in payload:
                self._set_phone(user, _optional_str(payload, "phone"))
            if "external_id" in payload:
                external_id = _optional_str(payload, "external_id")
                self._check_external_id(external_id, user.id)
                user.external_id = external_id
            if "role" in payload:
                user.role = self._role(payload, user.role)
            if "ticket_restriction" in payload:
                restriction = payload["ticket_restriction"]
                if restriction not in (None, "assigned", "groups", "organization", "requested"):
                    raise invalid("ticket_restriction", "Ticket restriction: is not valid")
                user.ticket_restriction = restriction
            if "verified" in payload:
                user.verified = bool(payload["verified"])
            if "user_fields" in payload:  # merged, like Zendesk: absent keys keep their value
                user.user_fields.update(self._user_fields(payload))
            user.updated_at = max(_now(), user.updated_at + timedelta(seconds=1))
            return user.render(base)

    # -- tickets: shared pieces ---------------------------------------------------------------

    def live_ticket(self, ticket_id: int) -> Ticket:
        return self._live_ticket(ticket_id)

    def _live_ticket(self, ticket_id: int) -> Ticket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None or ticket.deleted:
            raise not_found()
        return ticket

    def _existing_user(self, value: Any, field_name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.users:
            raise invalid(field_name, f"{field_name.replace('_id', '').capitalize()}: is invalid")
        return value

    def _agent(self, value: Any) -> int | None:
        if value is None:
            return None
        user_id = self._existing_user(value, "assignee_id")
        if self.users[user_id].role == "end-user":
            raise invalid("assignee_id", "Assignee: is not an agent")
        return user_id

    @staticmethod
    def _check_safe_update(ticket: Ticket, payload: dict[str, Any]) -> None:
        """Safe Update: the caller's ``updated_stamp`` must name the ticket's current version."""
        if not payload.get("safe_update"):
            return
        stamp = payload.get("updated_stamp")
        if not isinstance(stamp, str) or not stamp:
            raise invalid(
                "updated_stamp", "Updated stamp: is required with safe_update", "BlankValue"
            )
        # Equal strings always match; a differently written but equal instant does too.
        if stamp != _fmt(ticket.updated_at) and parse_instant(stamp) != ticket.updated_at:
            raise ApiError(409, "UpdateConflict", CONFLICT_MESSAGE)

    @staticmethod
    def _check_writable(ticket: Ticket) -> None:
        if ticket.status == "closed":
            raise invalid("status", CLOSED_MESSAGE)

    def _check_may_edit(self, ticket: Ticket, actor_id: int) -> None:
        """A restricted agent changes only the tickets assigned to them."""
        actor = self.users[actor_id]
        if actor.ticket_restriction is not None and ticket.assignee_id != actor_id:
            raise ApiError(403, "Forbidden", FORBIDDEN)

    def _check_status(self, status: Any) -> str:
        if status not in STATUSES:
            raise invalid("status", f"Status: {status} is not valid")
        if status == "hold" and not self.account.hold_enabled:
            raise invalid("status", "Status: hold is not enabled for this account")
        return str(status)

    def _parse_comment(self, raw: Any, default_author: int) -> _NewComment | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = {"body": raw}
        if not isinstance(raw, dict):
            raise invalid("comment", "Comment: is invalid")
        body, markup = raw.get("body"), raw.get("html_body")
        if markup is not None and not isinstance(markup, str):
            raise invalid("comment", "Comment: html_body must be a string")
        if body is not None and not isinstance(body, str):
            raise invalid("comment", "Comment: body must be a string")
        public = raw.get("public", True)
        if not isinstance(public, bool):
            raise invalid("comment", "Comment: public must be true or false")
        author = self._existing_user(raw.get("author_id", default_author), "author_id")
        if markup and markup.strip():
            return _NewComment(author, _text_from_html(markup), markup, public)
        if body and body.strip():
            return _NewComment(author, body, _html_from_text(body), public)
        return None  # an empty comment is dropped, not an error, on update

    @staticmethod
    def _set_tags(ticket: Ticket, tags: list[str]) -> list[dict[str, Any]]:
        """Give ``ticket`` these tags: the audit's Change event, if they changed anything."""
        if tags == ticket.tags:
            return []
        event = {
            "type": "Change",
            "field_name": "tags",
            "value": tags,
            "previous_value": ticket.tags,
        }
        ticket.tags = tags
        return [event]

    def _new_audit(
        self, ticket: Ticket, author_id: int, events: list[dict[str, Any]], at: datetime
    ) -> dict[str, Any]:
        for event in events:
            event["id"] = self._next_event
            self._next_event += 1
        audit = {
            "id": self._next_audit,
            "ticket_id": ticket.id,
            "author_id": author_id,
            "created_at": _fmt(at),
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "metadata": {"system": {"client": "Deskgate sandbox"}, "custom": {}},
            "events": events,
        }
        self._next_audit += 1
        ticket.audits.append(audit)
        return audit

    def _add_comment(self, ticket: Ticket, new: _NewComment, audit_id: int, at: datetime) -> None:
        ticket.comments.append(
            Comment(
                self._next_comment, new.author_id, new.body, new.html_body, new.public, audit_id, at
            )
        )
        self._next_comment += 1

    @staticmethod
    def _comment_event(new: _NewComment) -> dict[str, Any]:
        return {
            "type": "Comment",
            "author_id": new.author_id,
            "body": new.body,
            "html_body": new.html_body,
            "plain_body": new.body,
            "public": new.public,
            "attachments": [],
        }

    def _custom_fields(self, raw: Any, current: dict[int, Any]) -> dict[int, Any]:
        """Merge ``[{"id", "value"}]`` into the current values: unnamed fields keep theirs."""
        if not isinstance(raw, list):
            raise invalid("custom_fields", "Custom fields: must be an array")
        merged = dict(current)
        for item in raw:
            field_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(field_id, bool) or not isinstance(field_id, int):
                raise invalid("custom_fields", "Custom fields: each needs an integer id")
            merged[field_id] = item.get("value")
        return merged

    def _touch(self, ticket: Ticket) -> datetime:
        """Move ``updated_at`` strictly forward so every change yields a new Safe Update stamp."""
        ticket.updated_at = max(_now(), ticket.updated_at + timedelta(seconds=1))
        ticket.version += 1
        return ticket.updated_at

    def _trigger_jobs(self, ticket: Ticket, changed: bool) -> list[WebhookJob]:
        """Zendesk's trigger run after a create or an update: every active trigger whose
        conditions hold now fires, whatever fired before. A trigger that changes the ticket's
        tags starts the run again from the top, each trigger firing at most once per update
        (the tag change joins the update's audit). An update that changed nothing (no audit
        event) is no update, and runs nothing."""
        if not changed or not self.triggers_enabled:
            return []
        jobs: list[WebhookJob] = []
        fired: set[int] = set()
        again = True
        while again:
            again = False
            for trigger in self.triggers:
                if trigger["id"] in fired or not trigger["active"]:
                    continue
                if not triggers.conditions_hold(trigger["conditions"], _facts(ticket)):
                    continue
                fired.add(trigger["id"])
                again = self._fire(trigger, ticket, jobs)
                if again:
                    break
        return jobs

    def _fire(self, trigger: dict[str, Any], ticket: Ticket, jobs: list[WebhookJob]) -> bool:
        """One trigger's actions; True when they changed the ticket."""
        tags = list(ticket.tags)
        for action in trigger["actions"]:
            if action["field"] in triggers.TAG_ACTIONS:
                tags = triggers.apply_tag_action(action, tags)
                continue
            webhook_id, template = action["value"]
            target = self.account.delivery_target(webhook_id)
            if target is None:
                continue  # deleted or deactivated since: Zendesk sends nothing
            body = triggers.render_body(template, ticket.id)
            jobs.append(self._webhook_job(target, webhook_id, ticket.id, body, trigger["id"]))
        events = self._set_tags(ticket, tags)
        if events and ticket.audits:
            for event in events:
                event["id"] = self._next_event
                event["via"] = {
                    "channel": "rule",
                    "source": {"rel": "trigger", "id": trigger["id"]},
                }
                self._next_event += 1
            ticket.audits[-1]["events"] += events
        return bool(events)

    def _webhook_job(
        self, target: tuple[str, str], webhook_id: str, ticket_id: int, body: bytes, trigger_id: int
    ) -> WebhookJob:
        url, secret = target
        timestamp = _fmt(_now())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Webhook-Id": webhook_id,
            "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4().int)[:19],
            "X-Zendesk-Account-Id": str(ACCOUNT_ID),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Signature": sign(secret, timestamp, body),
        }
        return WebhookJob(url, ticket_id, body, headers, self.generation, trigger_id, webhook_id)

    # -- tickets: endpoints --------------------------------------------------------------------

    def create_ticket(
        self, payload: dict[str, Any], actor_id: int, base: str
    ) -> tuple[dict[str, Any], list[WebhookJob]]:
        with self.lock:
            first_new_user = self._next_user
            try:
                return self._create_ticket(payload, actor_id, base)
            except ApiError:
                # A rejected ticket must not leave behind the requester it created.
                for user_id in range(first_new_user, self._next_user):
                    self._drop_user(user_id)
                self._next_user = first_new_user
                raise

    def _create_ticket(
        self, payload: dict[str, Any], actor_id: int, base: str
    ) -> tuple[dict[str, Any], list[WebhookJob]]:
        requester_id = self._resolve_requester(payload, actor_id)
        submitter_id = requester_id
        if "submitter_id" in payload:
            submitter_id = self._existing_user(payload["submitter_id"], "submitter_id")
        # The submitter authors the first comment unless the comment names its author.
        new_comment = self._parse_comment(payload.get("comment"), submitter_id)
        if new_comment is None:
            description = payload.get("description")
            if isinstance(description, str) and description.strip():
                new_comment = _NewComment(
                    submitter_id, description, _html_from_text(description), True
                )
        if new_comment is None:
            raise invalid("description", "Description: cannot be blank", "BlankValue")
        status = self._check_status(payload.get("status", "new"))
        subject = _optional_str(payload, "subject")
        tags = sorted(set(normalize_tags(payload.get("tags"))))
        assignee_id = self._agent(payload.get("assignee_id"))
        if status == "solved" and assignee_id is None:
            assignee_id = actor_id if self.users[actor_id].role != "end-user" else None
        custom = self._custom_fields(payload.get("custom_fields", []), {})
        now = _now()
        ticket = Ticket(
            id=self._next_ticket,
            subject=subject,
            description=new_comment.body,
            status=str(status),
            tags=tags,
            requester_id=requester_id,
            submitter_id=submitter_id,
            assignee_id=assignee_id,
            external_id=_optional_str(payload, "external_id"),
            custom_fields=custom,
            created_at=now,
            updated_at=now,
        )
        self._next_ticket += 1
        self.tickets[ticket.id] = ticket
        events: list[dict[str, Any]] = [self._comment_event(new_comment)]
        for name, value in (
            ("subject", subject),
            ("status", ticket.status),
            ("requester_id", requester_id),
            ("assignee_id", assignee_id),
            ("tags", tags),
        ):
            events.append({"type": "Create", "field_name": name, "value": value})
        audit = self._new_audit(ticket, actor_id, events, now)
        self._add_comment(ticket, new_comment, audit["id"], now)
        jobs = self._trigger_jobs(ticket, changed=True)
        return {"ticket": ticket.render(base), "audit": copy.deepcopy(audit)}, jobs

    def _resolve_requester(self, payload: dict[str, Any], actor_id: int) -> int:
        """``requester`` {name, email} finds the user by e-mail or creates an end user."""
        if "requester_id" in payload:
            return self._existing_user(payload["requester_id"], "requester_id")
        requester = payload.get("requester")
        if requester is None:
            return actor_id  # Zendesk makes the authenticated user the requester
        if not isinstance(requester, dict):
            raise invalid("requester", "Requester: is invalid")
        email = _optional_str(requester, "email")
        name = _optional_str(requester, "name")
        if email:
            existing = self._user_by_email(email)
            if existing is not None:
                return existing.id
            return self._add_user(name=name or email.split("@")[0], email=email).id
        if not name:
            raise invalid("requester", "Requester: Name: cannot be blank", "BlankValue")
        return self._add_user(name=name, email=None).id

    def get_ticket(self, ticket_id: int, base: str) -> dict[str, Any]:
        with self.lock:
            return self._live_ticket(ticket_id).render(base)

    def sideload_users(self, ticket: dict[str, Any], base: str) -> list[dict[str, Any]]:
        """``include=users``: the ticket's requester, submitter and assignee, as Zendesk
        sideloads them next to the ticket."""
        ids = {ticket.get(k) for k in ("requester_id", "submitter_id", "assignee_id")}
        with self.lock:
            return [self.users[i].render(base) for i in sorted(i for i in ids if i in self.users)]

    def delete_ticket(self, ticket_id: int) -> None:
        with self.lock:
            self._live_ticket(ticket_id).deleted = True

    def update_ticket(
        self, ticket_id: int, payload: dict[str, Any], actor_id: int, base: str
    ) -> tuple[dict[str, Any], list[WebhookJob]]:
        """Validate everything first, then apply: a rejected update changes nothing."""
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            self._check_may_edit(ticket, actor_id)
            self._check_safe_update(ticket, payload)
            self._check_writable(ticket)

            changes: dict[str, Any] = {}
            if "subject" in payload:
                changes["subject"] = _optional_str(payload, "subject")
            if "status" in payload:
                status = self._check_status(payload["status"])
                if status == "new" and ticket.status != "new":
                    raise invalid(
                        "status", f"Status: cannot be changed from {ticket.status} to new"
                    )
                changes["status"] = status
            if "requester_id" in payload:
                changes["requester_id"] = self._existing_user(
                    payload["requester_id"], "requester_id"
                )
            if "assignee_id" in payload:
                changes["assignee_id"] = self._agent(payload["assignee_id"])
            if "external_id" in payload:
                changes["external_id"] = _optional_str(payload, "external_id")
            if "custom_fields" in payload:
                changes["custom_fields"] = self._custom_fields(
                    payload["custom_fields"], ticket.custom_fields
                )
            tags = list(ticket.tags)
            if "tags" in payload:  # replaces the whole list
                tags = normalize_tags(payload["tags"])
            tags += normalize_tags(payload.get("additional_tags"), "additional_tags")
            removed = set(normalize_tags(payload.get("remove_tags"), "remove_tags"))
            new_tags = sorted({t for t in tags if t not in removed})
            new_comment = self._parse_comment(payload.get("comment"), actor_id)
            if new_comment is not None and len(ticket.comments) >= MAX_COMMENTS:
                raise invalid("comment", "Comment: a ticket holds at most 5000 comments")

            # System rules: an end user's public reply reopens a pending/on-hold/solved ticket;
            # solving assigns the solver when nobody is assigned.
            if (
                new_comment is not None
                and new_comment.public
                and self.users[new_comment.author_id].role == "end-user"
                and "status" not in changes
                and ticket.status in ("pending", "hold", "solved")
            ):
                changes["status"] = "open"
            assignee = changes.get("assignee_id", ticket.assignee_id)
            solver_is_agent = self.users[actor_id].role != "end-user"
            if changes.get("status") == "solved" and assignee is None and solver_is_agent:
                changes["assignee_id"] = actor_id

            # Apply.
            at = self._touch(ticket)
            events: list[dict[str, Any]] = []
            if new_comment is not None:
                events.append(self._comment_event(new_comment))
            for name, value in changes.items():
                previous = getattr(ticket, name)
                if value != previous:
                    setattr(ticket, name, value)
                    if name == "custom_fields":
                        continue  # per-field Change events are not worth modelling here
                    events.append(
                        {
                            "type": "Change",
                            "field_name": name,
                            "value": value,
                            "previous_value": previous,
                        }
                    )
            events += self._set_tags(ticket, new_tags)
            audit = self._new_audit(ticket, actor_id, events, at)
            if new_comment is not None:
                self._add_comment(ticket, new_comment, audit["id"], at)
            jobs = self._trigger_jobs(ticket, changed=bool(events))
            return {"ticket": ticket.render(base), "audit": copy.deepcopy(audit)}, jobs

    def ticket_tags(self, ticket_id: int) -> list[str]:
        with self.lock:
            return list(self._live_ticket(ticket_id).tags)

    def change_tags(
        self, ticket_id: int, op: str, payload: dict[str, Any], actor_id: int
    ) -> tuple[list[str], list[WebhookJob]]:
        """``op`` is "add" (PUT), "set" (POST) or "remove" (DELETE) on the tags endpoint."""
        if "tags" not in payload:
            raise ApiError(400, "ParameterMissing", "param is missing or the value is empty: tags")
        given = normalize_tags(payload["tags"])
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            self._check_may_edit(ticket, actor_id)
            self._check_safe_update(ticket, payload)
            self._check_writable(ticket)
            tags_before = list(ticket.tags)
            if op == "add":
                new_tags = sorted(set(tags_before) | set(given))
            elif op == "set":
                new_tags = sorted(set(given))
            else:
                new_tags = sorted(set(tags_before) - set(given))
            at = self._touch(ticket)
            events = self._set_tags(ticket, new_tags)
            self._new_audit(ticket, actor_id, events, at)
            return list(new_tags), self._trigger_jobs(ticket, changed=bool(events))

    def comments(self, ticket_id: int, descending: bool) -> list[dict[str, Any]]:
        with self.lock:
            rendered = [c.render() for c in self._live_ticket(ticket_id).comments]
        return rendered[::-1] if descending else rendered

    def audits(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._live_ticket(ticket_id).audits)

    def sandbox_ticket(self, ticket_id: int, base: str) -> dict[str, Any]:
        """Everything about a ticket, deleted or not, for tests and demo timelines."""
        with self.lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                raise not_found()
            requester = self.users.get(ticket.requester_id)
            return {
                "ticket": ticket.render(base),
                "comments": [c.render() for c in ticket.comments],
                "audits": copy.deepcopy(ticket.audits),
                "requester": requester.render(base) if requester else None,
                "version": ticket.version,
                "deleted": ticket.deleted,
            }

    def sandbox_tickets(self, base: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**t.render(base), "deleted": t.deleted, "version": t.version}
                for t in self.tickets.values()
            ]

    # -- search ---------------------------------------------------------------------------------

    def search(
        self,
        query: SearchQuery,
        sort_by: str | None,
        sort_order: str | None,
        start: int,
        end: int,
        base: str,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The total number of matches and the rendered results ``[start:end]`` of them."""
        if query.types and "ticket" not in query.types:
            return 0, []  # only tickets are indexed here
        now = _now()
        sort_field = (sort_by or query.order_by or "").lower()
        descending = (sort_order or query.sort or "desc").lower() == "desc"

        def key(t: Ticket) -> tuple[float, int]:
            if sort_field == "status":
                return STATUS_RANK[t.status], t.id
            if sort_field == "created_at":
                return t.created_at.timestamp(), t.id
            return t.updated_at.timestamp(), t.id

        with self.lock:
            found = [
                t for t in self.tickets.values() if not t.deleted and self._matches(t, query, now)
            ]
            if sort_field in ("updated_at", "created_at", "status"):
                found.sort(key=key, reverse=descending)
            else:
                found.sort(key=lambda t: t.id)  # "relevance": stable, oldest first
            page = [{**t.render(base), "result_type": "ticket"} for t in found[start:end]]
            return len(found), page

    def _matches(self, ticket: Ticket, query: SearchQuery, now: datetime) -> bool:
        for keyword, values in query.equal.items():
            if not any(self._equals(ticket, keyword, v) for v in values):
                return False
        for keyword, value in query.excluded:
            if self._equals(ticket, keyword, value):
                return False
        for keyword, op, value in query.ranges:
            if not self._in_range(ticket, keyword, op, value, now):
                return False
        text = f"{ticket.subject or ''} {ticket.description}".lower()
        if not all(w in text for w in query.words):
            return False
        return not any(w in text for w in query.excluded_words)

    def _equals(self, ticket: Ticket, keyword: str, value: str) -> bool:
        if keyword == "status":
            return ticket.status == value
        if keyword == "tags":
            return value in ticket.tags
        if keyword in ("requester", "assignee"):
            user_id = ticket.requester_id if keyword == "requester" else ticket.assignee_id
            if user_id is None:
                return value == "none"
            user = self.users.get(user_id)
            return value == str(user_id) or (
                user is not None and (user.email or "").lower() == value
            )
        if keyword == "subject":
            return value in (ticket.subject or "").lower()
        if keyword == "description":
            return value in ticket.description.lower()
        if keyword in ("created", "updated"):
            when = ticket.created_at if keyword == "created" else ticket.updated_at
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                return when.date().isoformat() == value
            return parse_instant(value) == when
        return True

    def _in_range(self, ticket: Ticket, keyword: str, op: str, value: str, now: datetime) -> bool:
        if keyword == "status":
            if value not in STATUS_RANK:
                return False
            return compare(STATUS_RANK[ticket.status], op, STATUS_RANK[value])
        if keyword in ("created", "updated"):
            bound = date_bound(value, now)
            if bound is None:
                return True  # an unreadable date does not filter
            when = ticket.created_at if keyword == "created" else ticket.updated_at
            return compare(when.timestamp(), op, bound.timestamp())
        return True

    # -- the sandbox's trigger switch ----------------------------------------------------------

    def trigger_settings(self) -> dict[str, Any]:
        with self.lock:
            return {
                "enabled": self.triggers_enabled,
                "triggers": [self._render_trigger(t, "") for t in self.triggers],
            }

    def set_trigger_settings(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The sandbox's switch (``enabled``): off, no trigger fires (the push is off)."""
        with self.lock:
            if "enabled" in payload:
                self.triggers_enabled = bool(payload["enabled"])
        return self.trigger_settings()

    # -- triggers (``/api/v2/triggers``) --------------------------------------------------------

    def _parse_trigger(self, payload: Any, current: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise invalid("trigger", "Trigger: is invalid")
        try:
            return triggers.parse(payload, set(self.account.webhooks), current)
        except triggers.TriggerInvalid as exc:
            raise invalid(exc.field, str(exc)) from None

    def _add_trigger(self, payload: dict[str, Any]) -> dict[str, Any]:
        now = _fmt(_now())
        parsed = self._parse_trigger(payload, None)
        trigger = {
            **parsed,
            "id": self._next_trigger,
            "category_id": self.account.category_id(payload),
            "created_at": now,
            "updated_at": now,
        }
        self._next_trigger += 1
        self.triggers.append(trigger)
        return trigger

    def _find_trigger(self, trigger_id: int) -> dict[str, Any]:
        found = next((t for t in self.triggers if t["id"] == trigger_id), None)
        if found is None:
            raise not_found()
        return found

    def _render_trigger(self, trigger: dict[str, Any], base: str) -> dict[str, Any]:
        rendered = copy.deepcopy(trigger)
        rendered["url"] = f"{base}/api/v2/triggers/{trigger['id']}.json"
        rendered["position"] = self.triggers.index(trigger) + 1
        return rendered

    def list_triggers(
        self, base: str, active: bool | None = None, category_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self._render_trigger(t, base)
                for t in self.triggers
                if (active is None or t["active"] is active)
                and (category_id is None or t["category_id"] == category_id)
            ]

    def search_triggers(self, query: str, base: str) -> list[dict[str, Any]]:
        with self.lock:
            needle = query.lower()
            found = [t for t in self.triggers if needle in t["title"].lower()]
            return [self._render_trigger(t, base) for t in found]

    def get_trigger(self, trigger_id: int, base: str) -> dict[str, Any]:
        with self.lock:
            return self._render_trigger(self._find_trigger(trigger_id), base)

    def create_trigger(self, payload: dict[str, Any], base: str) -> dict[str, Any]:
        with self.lock:
            return self._render_trigger(self._add_trigger(payload), base)

    def update_trigger(self, trigger_id: int, payload: dict[str, Any], base: str) -> dict[str, Any]:
        """Conditions and actions are replaced together, as Zendesk does: an update that sends
        one of them leaves the other empty."""
        with self.lock:
            trigger = self._find_trigger(trigger_id)
            update = self._parse_trigger(payload, trigger)
            if "category_id" in payload or "category" in payload:
                update["category_id"] = self.account.category_id(payload)
            trigger.update(update)
            trigger["updated_at"] = _fmt(_now())
            return self._render_trigger(trigger, base)

    def delete_trigger(self, trigger_id: int) -> None:
        with self.lock:
            self.triggers.remove(self._find_trigger(trigger_id))

    # -- webhook deliveries ------------------------------------------------------------------

    def dispatch(self, jobs: list[WebhookJob]) -> None:
        """Deliver off the request thread: a trigger never delays the API response."""
        for job in jobs:
            threading.Thread(
                target=self._deliver, args=(job,), name=f"zendesk-webhook:{job.ticket_id}",
                daemon=True,
            ).start()  # fmt: skip

    def _deliver(self, job: WebhookJob) -> None:
        for attempt in range(1, len(RETRY_BACKOFF) + 2):
            status: int | None = None
            error: str | None = None
            try:
                client = self.webhooks.get()
                status = client.post(job.url, content=job.body, headers=job.headers).status_code
                retry = status >= 500 or status == 429
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
                retry = True
            with self.lock:
                if job.generation != self.generation:
                    return  # the sandbox was reset meanwhile
                self.deliveries.append(
                    {
                        "ticket_id": job.ticket_id,
                        "status": status,
                        "error": error,
                        "attempt": attempt,
                        "at": time.time(),
                        "url": job.url,
                        "invocation_id": job.headers["X-Zendesk-Webhook-Invocation-Id"],
                        "trigger_id": job.trigger_id,
                        "webhook_id": job.webhook_id,
                    }
                )
            if not retry or attempt > len(RETRY_BACKOFF):
                return
            time.sleep(RETRY_BACKOFF[attempt - 1])

    def delivery_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.deliveries]


# -- HTTP layer -----------------------------------------------------------------------------


class _StripJsonSuffix:
    """``/api/v2/tickets/5.json`` is ``/api/v2/tickets/5``: one route, one call-count key."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(API_PREFIX) and path.endswith(".json"):
            environ["PATH_INFO"] = path[: -len(".json")]
        return self.app(environ, start_response)


def _read_json(root: str | None) -> dict[str, Any]:
    """The request body as an object, or its ``root`` member (``{"ticket": {...}}``)."""
    raw = request.get_data()
    data: Any = {}
    if raw.strip():
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400, "InvalidJSON", f"The request body is not valid JSON: {exc}"
            ) from exc
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidJSON", "The request body must be a JSON object")
    if root is None:
        return data
    inner = data.get(root)
    if not isinstance(inner, dict):
        raise ApiError(400, "ParameterMissing", f"param is missing or the value is empty: {root}")
    return inner


def _base() -> str:
    return request.host_url.rstrip("/")


def _page_number(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "InvalidPaginationParameter", f"{name} must be an integer") from None
    if value < 1:
        raise ApiError(400, "InvalidPaginationParameter", f"{name} must be positive")
    return value


VIA_API = "5"  # Zendesk's via id of a ticket made through the API ("Web service")


def _facts(ticket: Ticket) -> dict[str, Any]:
    """What a trigger condition reads of ``ticket`` (``zendesk_triggers.conditions_hold``)."""
    return {
        "status": ticket.status,
        "tags": ticket.tags,
        "group_id": None,
        "brand_id": None,
        "organization_id": None,
        "assignee_id": ticket.assignee_id,
        "requester_id": ticket.requester_id,
        "via_id": VIA_API,
        "comment": ticket.comments[-1].body if ticket.comments else ticket.description,
        "subject": ticket.subject,
        "description": ticket.description,
        **{f"custom_fields_{k}": v for k, v in ticket.custom_fields.items()},
    }


class Paging(StrEnum):
    """How a listing endpoint pages, as its page in Zendesk's reference says ("Pagination"):
    cursor pagination when the request has ``page[size]``; otherwise offset pagination
    (``page``/``per_page``) or, where the endpoint documents "no pagination", every item."""

    CURSOR_OR_OFFSET = "cursor or offset"
    CURSOR_OR_ALL = "cursor or none"
    OFFSET_ONLY = "offset only"


def _paged(key: str, items: list[dict[str, Any]], paging: str) -> Response:
    """One page of ``items`` under ``key``, shaped as Zendesk's pagination guide shows: cursor
    pages carry ``meta.has_more``/``after_cursor`` and ``links.next`` (``page[size]`` at most
    100), offset pages ``next_page``/``previous_page``/``count`` (``per_page`` 100 by default and
    at most). A ``page[size]`` on an offset-only endpoint (the trigger and macro searches) is
    refused, as Zendesk refuses a page that is not an integer."""
    path = f"{_base()}{request.path}"
    if "page[size]" in request.args and paging != Paging.OFFSET_ONLY:
        size = min(_page_number("page[size]", MAX_PER_PAGE), MAX_PER_PAGE)
        start = _cursor(request.args.get("page[after]"))
        page, more = items[start : start + size], start + size < len(items)
        after = _encode_cursor(start + size) if page else None
        query = {k: v for k, v in request.args.items() if k not in ("page[after]", "page[before]")}
        links = {
            "next": f"{path}?{urlencode({**query, 'page[after]': after})}" if more else None,
            "prev": None,
        }
        meta = {"has_more": more, "after_cursor": after, "before_cursor": None}
        return _json({key: page, "meta": meta, "links": links})
    if request.args.get("page", "").startswith("{") or "page[size]" in request.args:
        raise ApiError(400, "InvalidPaginationParameter", "page must be an integer")
    if paging == Paging.CURSOR_OR_ALL and "page" not in request.args:
        return _json({key: items, "next_page": None, "previous_page": None, "count": len(items)})
    number = _page_number("page", 1)
    per_page = min(_page_number("per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    start, end = (number - 1) * per_page, number * per_page
    query = {k: v for k, v in request.args.items() if k != "page"}

    def page_url(n: int) -> str:
        return f"{path}?{urlencode({**query, 'page': n})}"

    return _json(
        {
            key: items[start:end],
            "next_page": page_url(number + 1) if end < len(items) else None,
            "previous_page": page_url(number - 1) if number > 1 else None,
            "count": len(items),
        }
    )


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _cursor(raw: str | None) -> int:
    """A ``page[after]`` this simulator handed out (opaque to clients, as Zendesk's are)."""
    if raw is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(raw.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "InvalidPaginationParameter", "page[after] is invalid") from None
    if not isinstance(offset, int) or offset < 0:
        raise ApiError(400, "InvalidPaginationParameter", "page[after] is invalid")
    return offset


def _answered_at(call: Call) -> float:
    return call.at


def _authenticated(config: ZendeskSimConfig, state: ZendeskState) -> User | None:
    """The staff member an API token request names: ``{email}/token`` : the account's token."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None
    username = auth.username or ""
    if not username.lower().endswith("/token"):
        return None
    if not hmac.compare_digest((auth.password or "").encode(), config.api_token.encode()):
        return None
    return state.staff(username[: -len("/token")])


def _actor() -> int:
    user_id: int = g.user_id
    return user_id


def _admin_only() -> None:
    if g.role != "admin":
        raise ApiError(403, "Forbidden", FORBIDDEN)


def install_admin_routes(app: Flask, state: ZendeskState) -> None:
    """Webhooks, trigger categories, triggers, macros and statuses: the account's configuration.
    Reading triggers, macros and statuses is open to agents; changing anything, and anything
    about webhooks, needs an admin."""
    account = state.account

    # -- webhooks --

    @app.post("/api/v2/webhooks")
    def create_webhook() -> Response:
        _admin_only()
        raw = _read_json("webhook")
        with state.lock:
            return _json({"webhook": account.create_webhook(raw, _actor())}, 201)

    @app.get("/api/v2/webhooks")
    def list_webhooks() -> Response:
        _admin_only()
        size = min(_page_number("page[size]", WEBHOOK_PAGE), WEBHOOK_PAGE)
        after = request.args.get("page[after]")
        with state.lock:
            found, more = account.list_webhooks(
                request.args.get("filter[name_contains]"), size, after
            )
        links: dict[str, str | None] = {"prev": None, "next": None}
        if more:
            query = {k: v for k, v in request.args.items() if k != "page[after]"}
            query["page[after]"] = found[-1]["id"]
            links["next"] = f"{_base()}/api/v2/webhooks?{urlencode(query)}"
        meta = {
            "has_more": more,
            "after_cursor": found[-1]["id"] if found else None,
            "before_cursor": found[0]["id"] if found else None,
        }
        return _json({"webhooks": found, "meta": meta, "links": links})

    @app.get("/api/v2/webhooks/<webhook_id>")
    def show_webhook(webhook_id: str) -> Response:
        _admin_only()
        with state.lock:
            return _json({"webhook": account.render_webhook(webhook_id)})

    @app.route("/api/v2/webhooks/<webhook_id>", methods=["PATCH", "PUT"])
    def update_webhook(webhook_id: str) -> Response:
        _admin_only()
        raw = _read_json("webhook")
        with state.lock:
            account.update_webhook(webhook_id, raw, _actor())
        return Response(status=204)  # no body: read it again to see it

    @app.delete("/api/v2/webhooks/<webhook_id>")
    def delete_webhook(webhook_id: str) -> Response:
        _admin_only()
        with state.lock:
            account.delete_webhook(webhook_id)
        return Response(status=204)

    @app.route("/api/v2/webhooks/<webhook_id>/signing_secret", methods=["GET", "POST"])
    def signing_secret(webhook_id: str) -> Response:
        _admin_only()
        reset = request.method == "POST"
        with state.lock:
            return _json(account.signing_secret(webhook_id, reset), 201 if reset else 200)

    # -- trigger categories --

    @app.get("/api/v2/trigger_categories")
    def list_trigger_categories() -> Response:
        with state.lock:
            found = account.list_categories()
        return _paged("trigger_categories", found, Paging.CURSOR_OR_OFFSET)

    @app.post("/api/v2/trigger_categories")
    def create_trigger_category() -> Response:
        _admin_only()
        raw = _read_json("trigger_category")
        with state.lock:
            return _json({"trigger_category": account.create_category(raw)}, 201)

    # -- triggers --

    @app.get("/api/v2/triggers")
    def list_triggers() -> Response:
        active = request.args.get("active")
        flag = None if active is None else active.lower() == "true"
        found = state.list_triggers(_base(), flag, request.args.get("category_id"))
        return _paged("triggers", found, Paging.CURSOR_OR_OFFSET)

    @app.get("/api/v2/triggers/search")
    def search_triggers() -> Response:
        query = request.args.get("query", "")
        if not query.strip():
            raise ApiError(400, "InvalidParameter", "query is required")
        return _paged("triggers", state.search_triggers(query, _base()), Paging.OFFSET_ONLY)

    @app.post("/api/v2/triggers")
    def create_trigger() -> Response:
        _admin_only()
        return _json({"trigger": state.create_trigger(_read_json("trigger"), _base())}, 201)

    @app.get("/api/v2/triggers/<int:trigger_id>")
    def show_trigger(trigger_id: int) -> Response:
        return _json({"trigger": state.get_trigger(trigger_id, _base())})

    @app.put("/api/v2/triggers/<int:trigger_id>")
    def update_trigger(trigger_id: int) -> Response:
        _admin_only()
        body = state.update_trigger(trigger_id, _read_json("trigger"), _base())
        return _json({"trigger": body})

    @app.delete("/api/v2/triggers/<int:trigger_id>")
    def delete_trigger(trigger_id: int) -> Response:
        _admin_only()
        state.delete_trigger(trigger_id)
        return Response(status=204)

    # -- macros --

    @app.get("/api/v2/macros")
    def list_macros() -> Response:
        with state.lock:
            found = account.list_macros()
        return _paged("macros", found, Paging.CURSOR_OR_OFFSET)

    @app.get("/api/v2/macros/search")
    def search_macros() -> Response:
        query = request.args.get("query", "")
        if not query.strip():
            raise ApiError(400, "InvalidParameter", "query is required")
        with state.lock:
            found = account.list_macros(query)
        return _paged("macros", found, Paging.OFFSET_ONLY)

    @app.post("/api/v2/macros")
    def create_macro() -> Response:
        _admin_only()  # a shared macro; agents' personal macros are not modelled
        raw = _read_json("macro")
        with state.lock:
            return _json({"macro": account.create_macro(raw)}, 201)

    @app.get("/api/v2/macros/<int:macro_id>")
    def show_macro(macro_id: int) -> Response:
        with state.lock:
            return _json({"macro": account.macro(macro_id)})

    @app.put("/api/v2/macros/<int:macro_id>")
    def update_macro(macro_id: int) -> Response:
        _admin_only()
        raw = _read_json("macro")
        with state.lock:
            return _json({"macro": account.update_macro(macro_id, raw)})

    @app.get("/api/v2/tickets/<int:ticket_id>/macros/<int:macro_id>/apply")
    def apply_macro(ticket_id: int, macro_id: int) -> Response:
        """What the ticket would become; nothing is saved (the agent's submit saves it)."""
        with state.lock:
            ticket = state.live_ticket(ticket_id)
            result = account.apply(account.macro(macro_id), list(ticket.tags), ticket.status)
        result["result"]["ticket"]["id"] = ticket_id
        result["result"]["ticket"]["url"] = f"{_base()}/api/v2/tickets/{ticket_id}.json"
        return _json(result)

    # -- ticket fields and automations --

    @app.get("/api/v2/ticket_fields")
    def list_ticket_fields() -> Response:
        with state.lock:
            found = account.list_fields(end_user=g.role == "end-user")
        return _paged("ticket_fields", found, Paging.CURSOR_OR_ALL)

    @app.post("/api/v2/ticket_fields")
    def create_ticket_field() -> Response:
        _admin_only()
        raw = _read_json("ticket_field")
        with state.lock:
            return _json({"ticket_field": account.create_field(raw)}, 201)

    @app.get("/api/v2/automations")
    def list_automations() -> Response:
        with state.lock:
            found = account.list_automations()
        return _paged("automations", found, Paging.CURSOR_OR_OFFSET)

    @app.post("/api/v2/automations")
    def create_automation() -> Response:
        _admin_only()
        raw = _read_json("automation")
        with state.lock:
            return _json({"automation": account.create_automation(raw)}, 201)

    # -- statuses --

    @app.get("/api/v2/custom_statuses")
    def list_custom_statuses() -> Response:
        with state.lock:
            return _json({"custom_statuses": account.custom_statuses()})


def create_app(config: ZendeskSimConfig) -> Flask:
    """The simulator app. State lives in ``app.extensions["zendesk_state"]``."""
    app = Flask(__name__)
    state = ZendeskState(config)
    controls = Controls("zendesk", error_response)
    controls.install(app)  # first, so faults and rate limits apply before authentication
    app.extensions["zendesk_state"] = state
    app.extensions["sandbox_controls"] = controls
    on_stop(app, state.webhooks.close)
    app.wsgi_app = _StripJsonSuffix(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def authenticate() -> Response | None:
        if not request.path.startswith(API_PREFIX):
            return None
        user = _authenticated(config, state)
        if user is not None:
            g.user_id, g.role = user.id, user.role
            return None
        resp = error_response(401, "Couldn't authenticate you")
        resp.headers["WWW-Authenticate"] = 'Basic realm="Web Password"'
        return resp

    @app.after_request
    def rate_limit_headers(resp: Response) -> Response:
        if not request.path.startswith(API_PREFIX):
            return resp
        with controls._lock:
            if controls.rate_limit is not None:
                limit = controls.rate_limit[0]
                remaining = limit - len(controls._recent)
            else:
                # This request is logged after this hook runs, hence the extra 1. The log is in
                # answering order, so the last minute's calls are found by bisection, not by a
                # scan of the whole log (which made each request slower as a run went on).
                since = time.time() - 60
                calls = controls.calls
                recent = len(calls) - bisect.bisect_left(calls, since, key=_answered_at)
                limit, remaining = DEFAULT_RATE_LIMIT, DEFAULT_RATE_LIMIT - recent - 1
        resp.headers["X-Rate-Limit"] = str(limit)
        resp.headers["X-Rate-Limit-Remaining"] = str(max(0, remaining))
        return resp

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return _json(exc.body(), exc.status)

    @app.errorhandler(AdminError)
    def admin_error(exc: AdminError) -> Response:
        return _json(exc.body, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return _json({"error": "InvalidEndpoint", "description": "Not found"}, 404)
        return error_response(status, exc.description or exc.name)

    # -- users --

    @app.post("/api/v2/users")
    def create_user() -> Response:
        return _json({"user": state.create_user(_read_json("user"), _base())}, 201)

    @app.get("/api/v2/users/me")
    def show_me() -> Response:
        return _json({"user": state.get_user(_actor(), _base())})

    @app.get("/api/v2/users/<int:user_id>")
    def show_user(user_id: int) -> Response:
        return _json({"user": state.get_user(user_id, _base())})

    @app.put("/api/v2/users/<int:user_id>")
    def update_user(user_id: int) -> Response:
        payload = _read_json("user")
        if {"role", "ticket_restriction"} & payload.keys():
            _admin_only()  # what a staff member may do is an admin's to say
        return _json({"user": state.update_user(user_id, payload, _base())})

    @app.get("/api/v2/users/<int:user_id>/identities")
    def list_identities(user_id: int) -> Response:
        return _json(state.list_identities(user_id, _base()))

    @app.post("/api/v2/users/<int:user_id>/identities")
    def create_identity(user_id: int) -> Response:
        identity = state.create_identity(user_id, _read_json("identity"), _base())
        return _json({"identity": identity}, 201)

    @app.put("/api/v2/users/<int:user_id>/identities/<int:identity_id>/make_primary")
    def make_primary(user_id: int, identity_id: int) -> Response:
        return _json(state.make_primary(user_id, identity_id, _base()))

    # -- tickets --

    def _warn_restricted(resp: Response, payload: dict[str, Any], action: str) -> Response:
        # Zendesk drops read-only keys and says so in a header instead of failing.
        dropped = [f"ticket.{k}" for k in READ_ONLY_TICKET_KEYS if k in payload]
        if dropped:
            keys = ", ".join(json.dumps(k) for k in dropped)
            resp.headers["X-Zendesk-API-Warn"] = (
                f'{{:allowed_parameters=>{{:controller=>"tickets", :action=>"{action}", '
                f":unpermitted_keys=>[{keys}], :invalid_values=>[]}}}}"
            )
        return resp

    @app.post("/api/v2/tickets")
    def create_ticket() -> Response:
        payload = _read_json("ticket")
        body, job = state.create_ticket(payload, _actor(), _base())
        state.dispatch(job)
        return _warn_restricted(_json(body, 201), payload, "create")

    @app.get("/api/v2/tickets/<int:ticket_id>")
    def show_ticket(ticket_id: int) -> Response:
        ticket = state.get_ticket(ticket_id, _base())
        body: dict[str, Any] = {"ticket": ticket}
        if "users" in request.args.get("include", "").split(","):
            body["users"] = state.sideload_users(ticket, _base())
        return _json(body)

    @app.put("/api/v2/tickets/<int:ticket_id>")
    def update_ticket(ticket_id: int) -> Response:
        payload = _read_json("ticket")
        body, job = state.update_ticket(ticket_id, payload, _actor(), _base())
        state.dispatch(job)
        return _warn_restricted(_json(body), payload, "update")

    @app.delete("/api/v2/tickets/<int:ticket_id>")
    def delete_ticket(ticket_id: int) -> Response:
        state.delete_ticket(ticket_id)
        return Response(status=204)

    def _offset_page(name: str, ticket_id: int, found: list[dict[str, Any]]) -> Response:
        """Offset pages of at most 100 (``page``, ``per_page``), as Zendesk's ticket comments
        and ticket audits lists answer them."""
        page = _page_number("page", 1)
        per_page = min(_page_number("per_page", MAX_PER_PAGE), MAX_PER_PAGE)
        start, end = (page - 1) * per_page, page * per_page
        base = _base()

        def page_url(number: int) -> str:
            params = {k: v for k, v in request.args.items() if k != "page"}
            path = f"/api/v2/tickets/{ticket_id}/{name}.json"
            return f"{base}{path}?{urlencode({'page': number, **params})}"

        return _json(
            {
                name: found[start:end],
                "next_page": page_url(page + 1) if end < len(found) else None,
                "previous_page": page_url(page - 1) if page > 1 else None,
                "count": len(found),
            }
        )

    def _descending() -> bool:
        return request.args.get("sort_order", "asc").lower() == "desc"

    @app.get("/api/v2/tickets/<int:ticket_id>/comments")
    def list_comments(ticket_id: int) -> Response:
        """Oldest first unless ``sort_order=desc``."""
        return _offset_page("comments", ticket_id, state.comments(ticket_id, _descending()))

    @app.get("/api/v2/tickets/<int:ticket_id>/audits")
    def list_audits(ticket_id: int) -> Response:
        """Zendesk's "List Audits for a Ticket": one audit per update, with its ``author_id``
        (who made the update) and its ``events`` (a tags ``Change`` carries ``value`` and
        ``previous_value``); oldest first unless ``sort_order=desc``, 100 a page at most, by
        cursor (``page[size]``, which Zendesk's reference recommends for this endpoint) or by
        offset."""
        audits = state.audits(ticket_id)
        return _paged("audits", audits[::-1] if _descending() else audits, Paging.CURSOR_OR_OFFSET)

    @app.get("/api/v2/tickets/<int:ticket_id>/tags")
    def show_tags(ticket_id: int) -> Response:
        return _json({"tags": state.ticket_tags(ticket_id)})

    @app.route("/api/v2/tickets/<int:ticket_id>/tags", methods=["PUT", "POST", "DELETE"])
    def change_tags(ticket_id: int) -> Response:
        op = {"PUT": "add", "POST": "set", "DELETE": "remove"}[request.method]
        tags, job = state.change_tags(ticket_id, op, _read_json(None), _actor())
        state.dispatch(job)
        return _json({"tags": tags}, 201 if request.method == "POST" else 200)

    install_admin_routes(app, state)

    # -- search --

    @app.get("/api/v2/search")
    def search() -> Response:
        text = request.args.get("query", "")
        if not text.strip():
            raise ApiError(400, "invalid", "Invalid search: query is required")
        page = _page_number("page", 1)
        per_page = min(_page_number("per_page", MAX_PER_PAGE), MAX_PER_PAGE)
        start = (page - 1) * per_page
        if start >= SEARCH_RESULT_LIMIT:
            raise ApiError(
                422,
                "invalid",
                "Invalid search: Requested response size was greater than Search Response Limits",
            )
        sort_by, sort_order = request.args.get("sort_by"), request.args.get("sort_order")
        end = min(start + per_page, SEARCH_RESULT_LIMIT)
        base = _base()
        count, results = state.search(
            SearchQuery.parse(text), sort_by, sort_order, start, end, base
        )

        def page_url(number: int) -> str:
            params = {k: v for k, v in request.args.items() if k != "page"}
            return f"{base}/api/v2/search.json?{urlencode({'page': number, **params})}"

        has_next = end < min(count, SEARCH_RESULT_LIMIT)
        return _json(
            {
                "results": results,
                "count": count,
                "next_page": page_url(page + 1) if has_next else None,
                "previous_page": page_url(page - 1) if page > 1 else None,
                "facets": None,
            }
        )

    # -- sandbox controls (no auth, never counted) --

    @app.get(f"{CONTROL_PREFIX}tickets")
    def sandbox_tickets() -> Response:
        return _json({"tickets": state.sandbox_tickets(_base())})

    @app.get(f"{CONTROL_PREFIX}tickets/<int:ticket_id>")
    def sandbox_ticket(ticket_id: int) -> Response:
        return _json(state.sandbox_ticket(ticket_id, _base()))

    @app.get(f"{CONTROL_PREFIX}webhook_deliveries")
    def sandbox_deliveries() -> Response:
        return _json({"deliveries": state.delivery_log()})

    @app.route(f"{CONTROL_PREFIX}triggers", methods=["GET", "PUT"])
    def sandbox_triggers() -> Response:
        if request.method == "GET":
            return _json(state.trigger_settings())
        return _json(state.set_trigger_settings(_read_json(None)))

    @app.put(f"{CONTROL_PREFIX}account")
    def sandbox_account() -> Response:
        """``{"hold_enabled": false}``: an account where nobody enabled On-hold."""
        payload = _read_json(None)
        with state.lock:
            if "hold_enabled" in payload:
                state.account.hold_enabled = bool(payload["hold_enabled"])
            return _json({"hold_enabled": state.account.hold_enabled})

    @app.post(f"{CONTROL_PREFIX}reset")
    def sandbox_reset() -> Response:
        """Tickets, users, deliveries; with ``{"account": true}`` the configuration too."""
        state.reset(account=bool(_read_json(None).get("account")))
        return _json({"ok": True})

    return app


# -- the sandbox's wiring (sandbox/registry.py) ----------------------------------------------


def _app_config(wiring: Wiring) -> ZendeskSimConfig:
    # Empty of webhooks, triggers and macros: the stack provisions it with `deskgate setup`.
    return ZendeskSimConfig(
        email=AGENT,
        admin_email=ADMIN,
        people_agent_email=PEOPLE_AGENT,
        user_age_days=wiring.options.user_age_days,
    )


def _config_text(wiring: Wiring) -> str:
    o = wiring.options
    tags = "\n".join(f'{tag} = "{reason}"' for tag, reason in TRIGGERS.items())
    return f"""[desks.{DESK}]
kind = "zendesk"
base_url = "{wiring.url}"
email = "{AGENT}"
channel = "EMAIL"
link_validity_minutes = {o.link_validity_minutes}
poll_interval_seconds = {o.poll_interval_seconds}

[desks.{DESK}.triggers]
{tags}
"""


def _banner(url: str, config: ZendeskSimConfig) -> str:
    return f"""  Zendesk sandbox    {url}/api/v2
                     basic auth {config.email}/token : {config.api_token}
                     control API {url}{CONTROL_PREFIX}calls"""


SIMULATOR = Simulator(
    name="zendesk",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    # The webhook's signing secret is not here: `deskgate setup` reads it from the webhook it
    # makes and writes it into the stack's env file.
    secrets={f"DESKGATE_DESKS__{DESK.upper()}__API_TOKEN": ZendeskSimConfig.api_token},
    admin=(ADMIN, ZendeskSimConfig.api_token),
    dev_port=8101,
    banner=_banner,
    driver=ZendeskDriver,
)
