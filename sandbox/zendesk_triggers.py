"""Zendesk triggers for the simulator: their shape, their validation and their conditions.

Zendesk evaluates every active trigger on every ticket create and every update (a comment alone,
a tag alone), in order, and fires each one whose conditions hold *at that moment*; it remembers
nothing about earlier updates. So a trigger whose only condition is "tags contain the trigger
tag" fires again on every later update of a flagged ticket. The subset modelled here is what
``deskgate setup`` writes (connectors/zendesk/setup.py):

- ``current_tags`` with ``includes`` (any of the space-separated tags is on the ticket) and
  ``not_includes`` (none of them is);
- ``status`` with ``is``, ``is_not``, ``less_than``, ``greater_than`` (new < open < pending <
  hold < solved < closed);
- ``conditions.all``: every one holds; ``conditions.any``: at least one holds, if there are any;
- one action, ``notification_webhook`` with ``[webhook_id, body]``; ``{{ticket.id}}`` in the body
  is replaced by the ticket's id;
- an update replaces conditions and actions together: one sent alone leaves the other empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
OPERATORS = {
    "current_tags": ("includes", "not_includes"),
    "status": ("is", "is_not", "less_than", "greater_than"),
}
NOTIFY_WEBHOOK = "notification_webhook"


class TriggerInvalid(ValueError):
    """A trigger Zendesk would refuse (422), naming the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _condition(field: str, operator: str, value: str) -> dict[str, str]:
    return {"field": field, "operator": operator, "value": value}


def conditions_hold(conditions: dict[str, Any], status: str, tags: Iterable[str]) -> bool:
    """Zendesk's reading of a trigger's conditions against a ticket as it is now."""
    present = set(tags)

    def holds(condition: dict[str, Any]) -> bool:
        field, operator, value = condition["field"], condition["operator"], condition["value"]
        if field == "current_tags":
            any_present = bool(set(value.lower().split()) & present)
            return any_present if operator == "includes" else not any_present
        mine, other = STATUS_RANK[status], STATUS_RANK[value]
        if operator == "is":
            return mine == other
        if operator == "is_not":
            return mine != other
        return mine < other if operator == "less_than" else mine > other

    every, some = conditions.get("all", []), conditions.get("any", [])
    return all(holds(c) for c in every) and (not some or any(holds(c) for c in some))


def render_body(template: str, ticket_id: int) -> bytes:
    return template.replace("{{ticket.id}}", str(ticket_id)).encode()


def parse(
    payload: dict[str, Any], webhook_ids: Iterable[str], current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A trigger from a create (``current`` None) or an update of ``current``: title, active and
    description are changed when given; conditions and actions are replaced together, as
    Zendesk documents: an update sending only one of them leaves the other empty."""
    out: dict[str, Any] = {} if current is None else dict(current)
    title = payload.get("title", out.get("title"))
    if not isinstance(title, str) or not title.strip():
        raise TriggerInvalid("title", "Title: cannot be blank")
    out["title"] = title
    active = payload.get("active", out.get("active", True))
    if not isinstance(active, bool):
        raise TriggerInvalid("active", "Active: must be true or false")
    out["active"] = active
    if "description" in payload:
        out["description"] = payload["description"]
    out.setdefault("description", None)
    if current is None:
        out["conditions"] = _conditions(payload.get("conditions"))
        out["actions"] = _actions(payload.get("actions"), set(webhook_ids))
    elif "conditions" in payload or "actions" in payload:
        empty: dict[str, list[Any]] = {"all": [], "any": []}
        given = payload.get("conditions")
        out["conditions"] = _conditions(given) if "conditions" in payload else empty
        out["actions"] = (
            _actions(payload.get("actions"), set(webhook_ids)) if "actions" in payload else []
        )
    return out


def _conditions(raw: Any) -> dict[str, list[dict[str, str]]]:
    if not isinstance(raw, dict):
        raise TriggerInvalid("conditions", "Conditions: must be an object with all and any")
    out: dict[str, list[dict[str, str]]] = {}
    for group in ("all", "any"):
        items = raw.get(group) or []
        if not isinstance(items, list):
            raise TriggerInvalid("conditions", f"Conditions: {group} must be an array")
        out[group] = [_one_condition(item) for item in items]
    if not out["all"] and not out["any"]:
        raise TriggerInvalid("conditions", "Conditions: a trigger needs at least one")
    return out


def _one_condition(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise TriggerInvalid("conditions", "Conditions: each must be an object")
    field, operator, value = item.get("field"), item.get("operator"), item.get("value")
    if field not in OPERATORS:
        raise TriggerInvalid("conditions", f"Conditions: field {field!r} is not supported")
    if operator not in OPERATORS[field]:
        raise TriggerInvalid("conditions", f"Conditions: {field} has no operator {operator!r}")
    if not isinstance(value, str) or not value.strip():
        raise TriggerInvalid("conditions", f"Conditions: {field} needs a value")
    if field == "status" and value not in STATUS_RANK:
        raise TriggerInvalid("conditions", f"Conditions: {value!r} is not a status")
    return _condition(field, operator, value)


def _actions(raw: Any, webhook_ids: set[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise TriggerInvalid("actions", "Actions: a trigger needs at least one")
    out = []
    for item in raw:
        if not isinstance(item, dict) or item.get("field") != NOTIFY_WEBHOOK:
            raise TriggerInvalid("actions", f"Actions: only {NOTIFY_WEBHOOK} is supported")
        value = item.get("value")
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise TriggerInvalid("actions", "Actions: value must be [webhook_id, body]")
        if value[0] not in webhook_ids:
            raise TriggerInvalid("actions", f"Actions: no webhook {value[0]!r}")
        try:
            json.loads(render_body(value[1], 1))
        except ValueError:
            raise TriggerInvalid("actions", "Actions: the body must be JSON") from None
        out.append({"field": NOTIFY_WEBHOOK, "value": list(value)})
    return out
