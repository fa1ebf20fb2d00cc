"""The Zendesk account's configuration objects in the simulator: webhooks with their signing
secrets, trigger categories, macros and the ticket statuses, as ``deskgate setup`` and
``deskgate doctor`` meet them through the API.

- Webhooks (``/api/v2/webhooks``): ids are 26-character ULIDs; ``POST`` answers 201 with the
  webhook, ``PATCH`` 204 without a body, the list filters with ``filter[name_contains]`` and pages
  with ``page[size]``/``page[after]`` (``meta.has_more``). Each webhook has its own signing secret
  (``GET``/``POST .../signing_secret``; ``POST`` resets it, the old one signs nothing any more).
  Errors are JSON:API bodies (``{"errors": [...]}``), as on Zendesk's newer endpoints.
- Trigger categories (``/api/v2/trigger_categories``): ids are strings.
- Listings page as Zendesk's reference documents each one (``sandbox/zendesk.py``, ``_paged``):
  categories, triggers, macros and automations by cursor (``page[size]``, at most 100) or offset
  (``page``/``per_page``, 100 by default and at most); the trigger and macro searches by offset
  only; ticket fields by cursor, or all of them when no ``page[size]`` is given.
- Macros (``/api/v2/macros``): ``current_tags`` (adds), ``remove_tags``, ``status`` and
  ``comment_value`` actions; ``GET /tickets/{id}/macros/{id}/apply`` answers what the ticket would
  become without saving it.
- Ticket fields (``/api/v2/ticket_fields``): the system fields every account has, then custom
  ones an admin makes. ``editable_in_portal`` says end users may set the field on the Help
  Center's request form; a ``tagger``/``multiselect`` option's ``value``, and a ``checkbox``'s
  ``tag``, is the tag Zendesk puts on the ticket when it is chosen (Zendesk's ticket fields
  reference). Anyone may list them; only an admin may make one.
- Automations (``/api/v2/automations``): stored and listed in Zendesk's shape, never run (Zendesk
  runs them hourly on time-based conditions; nothing in the sandbox waits that long). As Zendesk
  requires, each has a time-based condition (``hours_since_*``) and at least one action.
- Statuses (``GET /api/v2/custom_statuses``): one system status per category; the ``hold`` one
  is active only when an admin enabled On-hold (the sandbox's account has it on;
  ``PUT /_sandbox/account {"hold_enabled": false}`` turns it off).

Everything here is called under the simulator's one lock (``ZendeskState.lock``).
"""

from __future__ import annotations

import copy
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WEBHOOK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
WEBHOOK_FORMATS = ("json", "xml", "form_encoded")
WEBHOOK_STATUSES = ("active", "inactive")
WEBHOOK_FIELDS = (
    "name",
    "status",
    "endpoint",
    "http_method",
    "request_format",
    "subscriptions",
    "description",
    "authentication",
    "custom_headers",
)
WEBHOOK_PAGE = 100
MACRO_ACTIONS = ("current_tags", "remove_tags", "status", "comment_value")
STATUS_CATEGORIES = ("new", "open", "pending", "hold", "solved")
FIRST_CATEGORY_ID = 6_130_869_158_001
FIRST_MACRO_ID = 360_100_001
FIRST_STATUS_ID = 8_000_001
FIRST_FIELD_ID = 360_200_001
FIRST_AUTOMATION_ID = 360_300_001
FIELD_TYPES = ("text", "textarea", "checkbox", "date", "integer", "decimal", "regexp",
               "partialcreditcard", "multiselect", "tagger", "lookup")  # fmt: skip
# The system fields (type, title, editable by end users), as every account lists them first.
SYSTEM_FIELDS = (
    ("subject", "Subject", True),
    ("description", "Description", True),
    ("status", "Status", False),
    ("tickettype", "Type", False),
    ("priority", "Priority", False),
    ("group", "Group", False),
    ("assignee", "Assignee", False),
)


class AdminError(Exception):
    """An answer other than 2xx, with Zendesk's body for it."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def jsonapi_error(status: int, code: str, detail: str) -> AdminError:
    return AdminError(status, {"errors": [{"code": code, "title": code, "detail": detail}]})


def record_invalid(field: str, description: str) -> AdminError:
    details = {field: [{"description": description, "error": "InvalidValue"}]}
    return AdminError(
        422,
        {"error": "RecordInvalid", "description": "Record validation errors", "details": details},
    )


def not_found() -> AdminError:
    return AdminError(404, {"error": "RecordNotFound", "description": "Not found"})


def ulid() -> str:
    """A ULID as Zendesk gives webhooks: 48 bits of milliseconds, 80 random bits, base 32."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def new_secret() -> str:
    return secrets.token_urlsafe(32) + "="  # 44 characters, like Zendesk's


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ZendeskAccount:
    """Webhooks, trigger categories, macros and statuses of the one simulated account."""

    def __init__(self, first_secret: str) -> None:
        # The first webhook made gets this secret (Zendesk would make up one), so the sandbox's
        # tests can sign pushes of their own; every later webhook and every reset, a random one.
        self.first_secret = first_secret
        self.hold_enabled = True
        self.clear()

    def clear(self) -> None:
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, str] = {}
        self.categories: list[dict[str, Any]] = []
        self.macros: dict[int, dict[str, Any]] = {}
        self._next_category = FIRST_CATEGORY_ID
        self._next_macro = FIRST_MACRO_ID
        self.fields: list[dict[str, Any]] = [
            {"id": FIRST_FIELD_ID + i, "type": kind, "title": title, "active": True,
             "required": False, "visible_in_portal": True, "editable_in_portal": editable,
             "removable": False, "tag": None, "position": i}
            for i, (kind, title, editable) in enumerate(SYSTEM_FIELDS)
        ]  # fmt: skip
        self._next_field = FIRST_FIELD_ID + len(SYSTEM_FIELDS)
        self.automations: list[dict[str, Any]] = []
        self._next_automation = FIRST_AUTOMATION_ID
        self._secret_given = False

    # -- webhooks ---------------------------------------------------------------------------

    def _webhook_fields(
        self, raw: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any]:
        out = dict(current or {})
        for key in WEBHOOK_FIELDS:
            if key in raw:
                out[key] = copy.deepcopy(raw[key])
        out.setdefault("subscriptions", [])
        checks: tuple[tuple[str, Callable[[Any], bool]], ...] = (
            ("name", lambda v: isinstance(v, str) and v.strip() != ""),
            ("status", lambda v: v in WEBHOOK_STATUSES),
            ("endpoint", _is_url),
            ("http_method", lambda v: v in WEBHOOK_METHODS),
            ("request_format", lambda v: v in WEBHOOK_FORMATS),
            ("subscriptions", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)),
        )
        for key, ok in checks:
            if key not in out:
                raise jsonapi_error(400, "MissingParameter", f"{key} is required")
            if not ok(out[key]):
                raise jsonapi_error(400, "InvalidValue", f"{key} is invalid")
        if current is not None and out["subscriptions"] != current["subscriptions"]:
            # The connection method (trigger/automation or events) cannot change.
            raise jsonapi_error(400, "InvalidValue", "subscriptions cannot be changed")
        return out

    def create_webhook(self, raw: dict[str, Any], actor: int) -> dict[str, Any]:
        webhook = self._webhook_fields(raw, None)
        webhook_id, now = ulid(), _now()
        webhook.update(id=webhook_id, created_at=now, updated_at=now, created_by=str(actor))
        webhook["updated_by"] = str(actor)
        given = raw.get("signing_secret")
        if isinstance(given, dict) and isinstance(given.get("secret"), str) and given["secret"]:
            self.secrets[webhook_id] = given["secret"]
        elif not self._secret_given:
            self.secrets[webhook_id] = self.first_secret
        else:
            self.secrets[webhook_id] = new_secret()
        self._secret_given = True
        self.webhooks[webhook_id] = webhook
        return self.render_webhook(webhook_id)

    def render_webhook(self, webhook_id: str) -> dict[str, Any]:
        rendered = copy.deepcopy(self._webhook(webhook_id))
        auth = rendered.get("authentication")
        if isinstance(auth, dict) and isinstance(auth.get("data"), dict):
            # Zendesk echoes only the user name of a credential, never a password or token.
            data = auth["data"]
            auth["data"] = {"username": data["username"]} if "username" in data else {}
        return rendered

    def _webhook(self, webhook_id: str) -> dict[str, Any]:
        if webhook_id not in self.webhooks:
            raise jsonapi_error(404, "WebhookNotFound", f"Webhook {webhook_id} not found")
        return self.webhooks[webhook_id]

    def list_webhooks(
        self, name_contains: str | None, size: int, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        found = sorted(self.webhooks)  # ULIDs sort by creation
        if name_contains:
            needle = name_contains.lower()
            found = [w for w in found if needle in self.webhooks[w]["name"].lower()]
        if after:
            found = [w for w in found if w > after]
        page = found[:size]
        return [self.render_webhook(w) for w in page], len(found) > size

    def update_webhook(self, webhook_id: str, raw: dict[str, Any], actor: int) -> None:
        current = self._webhook(webhook_id)
        updated = self._webhook_fields(raw, current)
        updated.update(updated_at=_now(), updated_by=str(actor))
        self.webhooks[webhook_id] = updated

    def delete_webhook(self, webhook_id: str) -> None:
        self._webhook(webhook_id)
        del self.webhooks[webhook_id]
        del self.secrets[webhook_id]

    def signing_secret(self, webhook_id: str, reset: bool) -> dict[str, Any]:
        self._webhook(webhook_id)
        if reset:
            self.secrets[webhook_id] = new_secret()
        return {"signing_secret": {"secret": self.secrets[webhook_id], "algorithm": "SHA256"}}

    def delivery_target(self, webhook_id: str) -> tuple[str, str] | None:
        """(endpoint, signing secret) of an active webhook; None if it is gone or inactive."""
        webhook = self.webhooks.get(webhook_id)
        if webhook is None or webhook["status"] != "active":
            return None
        return webhook["endpoint"], self.secrets[webhook_id]

    # -- trigger categories -----------------------------------------------------------------

    def create_category(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise jsonapi_error(400, "InvalidValue", "name is required")
        position = raw.get("position", len(self.categories))
        if not isinstance(position, int):
            raise jsonapi_error(400, "InvalidValue", "position must be an integer")
        now = _now()
        category = {
            "id": str(self._next_category),
            "name": raw["name"],
            "position": position,
            "created_at": now,
            "updated_at": now,
        }
        self._next_category += 1
        self.categories.append(category)
        return dict(category)

    def category_id(self, payload: dict[str, Any]) -> str:
        """A trigger's category: ``category_id`` (must exist), an inline ``category`` (made
        now), or neither (the first category, made if there is none, as Zendesk assigns one)."""
        if "category_id" in payload:
            wanted = str(payload["category_id"])
            if not any(c["id"] == wanted for c in self.categories):
                raise record_invalid("category_id", "Category: does not exist")
            return wanted
        if isinstance(payload.get("category"), dict):
            return str(self.create_category(payload["category"])["id"])
        if not self.categories:
            self.create_category({"name": "General", "position": 0})
        return str(self.categories[0]["id"])

    def list_categories(self) -> list[dict[str, Any]]:
        return [dict(c) for c in sorted(self.categories, key=lambda c: c["position"])]

    # -- macros -----------------------------------------------------------------------------

    def _macro_fields(self, raw: Any, current: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise record_invalid("macro", "Macro: is invalid")
        out = dict(current or {"active": True, "description": None, "restriction": None})
        for key in ("title", "active", "description", "actions", "restriction"):
            if key in raw:
                out[key] = copy.deepcopy(raw[key])
        if not isinstance(out.get("title"), str) or not out["title"].strip():
            raise record_invalid("title", "Title: cannot be blank")
        if not isinstance(out.get("active"), bool):
            raise record_invalid("active", "Active: must be true or false")
        actions = out.get("actions")
        if not isinstance(actions, list) or not actions:
            raise record_invalid("actions", "Actions: a macro needs at least one")
        for action in actions:
            if not isinstance(action, dict) or action.get("field") not in MACRO_ACTIONS:
                supported = ", ".join(MACRO_ACTIONS)
                raise record_invalid("actions", f"Actions: supported are {supported}")
            if not isinstance(action.get("value"), str) or not action["value"].strip():
                raise record_invalid("actions", f"Actions: {action['field']} needs a value")
        return out

    def create_macro(self, raw: Any) -> dict[str, Any]:
        macro = self._macro_fields(raw, None)
        now = _now()
        macro.update(id=self._next_macro, created_at=now, updated_at=now)
        self._next_macro += 1
        self.macros[macro["id"]] = macro
        return copy.deepcopy(macro)

    def macro(self, macro_id: int) -> dict[str, Any]:
        if macro_id not in self.macros:
            raise not_found()
        return copy.deepcopy(self.macros[macro_id])

    def update_macro(self, macro_id: int, raw: Any) -> dict[str, Any]:
        current = self.macro(macro_id)
        updated = self._macro_fields(raw, current)
        updated["updated_at"] = _now()
        self.macros[macro_id] = updated
        return copy.deepcopy(updated)

    def list_macros(self, query: str | None = None) -> list[dict[str, Any]]:
        found = [copy.deepcopy(m) for _, m in sorted(self.macros.items())]
        if query is not None:
            found = [m for m in found if query.lower() in m["title"].lower()]
        return found

    @staticmethod
    def apply(macro: dict[str, Any], tags: list[str], status: str) -> dict[str, Any]:
        """What the ticket would become: its whole tag list, its status, a comment; unsaved."""
        new_tags, new_status, comment = set(tags), status, None
        for action in macro["actions"]:
            words = set(action["value"].lower().split())
            if action["field"] == "current_tags":
                new_tags |= words
            elif action["field"] == "remove_tags":
                new_tags -= words
            elif action["field"] == "status":
                new_status = action["value"]
            else:
                comment = {"body": action["value"], "public": False}
        result: dict[str, Any] = {"ticket": {"tags": sorted(new_tags), "status": new_status}}
        if comment is not None:
            result["comment"] = comment
        return {"result": result}

    # -- ticket fields ----------------------------------------------------------------------

    def create_field(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise record_invalid("ticket_field", "Ticket field: is invalid")
        kind, title = raw.get("type"), raw.get("title")
        if kind not in FIELD_TYPES:
            raise record_invalid("type", f"Type: must be one of {', '.join(FIELD_TYPES)}")
        if not isinstance(title, str) or not title.strip():
            raise record_invalid("title", "Title: cannot be blank")
        field: dict[str, Any] = {
            "id": self._next_field,
            "type": kind,
            "title": title,
            "active": bool(raw.get("active", True)),
            "required": bool(raw.get("required", False)),
            "visible_in_portal": bool(raw.get("visible_in_portal", False)),
            "editable_in_portal": bool(raw.get("editable_in_portal", False)),
            "removable": True,
            "tag": raw.get("tag") if kind == "checkbox" else None,
            "position": len(self.fields),
        }
        if kind in ("tagger", "multiselect"):
            field["custom_field_options"] = self._options(raw.get("custom_field_options"))
        self._next_field += 1
        self.fields.append(field)
        return copy.deepcopy(field)

    def _options(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise record_invalid("custom_field_options", "Field options: cannot be blank")
        options = []
        for i, item in enumerate(raw):
            name = item.get("name") if isinstance(item, dict) else None
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(name, str) or not isinstance(value, str) or not value.strip():
                raise record_invalid("custom_field_options", "Field options: need name and value")
            options.append({"id": self._next_field * 100 + i, "name": name, "value": value})
        return options

    def list_fields(self, end_user: bool) -> list[dict[str, Any]]:
        """Every field; an end user sees only those visible in the Help Center."""
        return [copy.deepcopy(f) for f in self.fields if f["visible_in_portal"] or not end_user]

    # -- automations --------------------------------------------------------------------------

    def create_automation(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("title"), str):
            raise record_invalid("title", "Title: cannot be blank")
        conditions = raw.get("conditions")
        every = conditions.get("all") if isinstance(conditions, dict) else None
        some = conditions.get("any", []) if isinstance(conditions, dict) else None
        items = (every or []) + (some or []) if isinstance(every, list) else []
        if not all(
            isinstance(c, dict) and {"field", "operator", "value"} <= c.keys() for c in items
        ):
            raise record_invalid("conditions", "Conditions: each needs field, operator, value")
        if not any(str(c["field"]).startswith("hours_since_") for c in items):
            raise record_invalid("conditions", "Conditions: an automation needs a time condition")
        actions = raw.get("actions")
        if not isinstance(actions, list) or not actions:
            raise record_invalid("actions", "Actions: an automation needs at least one")
        if not all(isinstance(a, dict) and {"field", "value"} <= a.keys() for a in actions):
            raise record_invalid("actions", "Actions: each needs field and value")
        now = _now()
        automation = {
            "id": self._next_automation,
            "title": raw["title"],
            "active": bool(raw.get("active", True)),
            "conditions": {"all": copy.deepcopy(every), "any": copy.deepcopy(some or [])},
            "actions": copy.deepcopy(actions),
            "position": len(self.automations) + 1,
            "created_at": now,
            "updated_at": now,
        }
        self._next_automation += 1
        self.automations.append(automation)
        return copy.deepcopy(automation)

    def list_automations(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.automations)

    # -- statuses ---------------------------------------------------------------------------

    def custom_statuses(self) -> list[dict[str, Any]]:
        return [
            {
                "id": FIRST_STATUS_ID + i,
                "status_category": category,
                "agent_label": "On-hold" if category == "hold" else category.capitalize(),
                "end_user_label": "Open" if category == "hold" else category.capitalize(),
                "active": self.hold_enabled if category == "hold" else True,
                "default": True,
            }
            for i, category in enumerate(STATUS_CATEGORIES)
        ]


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
