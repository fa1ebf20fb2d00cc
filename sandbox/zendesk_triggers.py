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
- the restrictions an admin adds (Zendesk's conditions reference): ``group_id``, ``brand_id``,
  ``organization_id``, ``assignee_id``, ``requester_id``, ``via_id`` (``is``/``is_not``), ticket
  text (``comment_includes_word``, ``subject_includes_word``, ``description_includes_word``:
  ``includes`` any word, ``not_includes``, ``is``/``is_not`` the exact phrase) and custom fields
  (``custom_fields_<id>``: ``is``/``is_not``). The simulator's tickets have no group, brand or
  organization, so a condition on one of those holds only as ``is_not``;
- ``conditions.all``: every one holds; ``conditions.any``: at least one holds, if there are any;
- actions: ``notification_webhook`` with ``[webhook_id, body]`` (``{{ticket.id}}`` in the body
  is replaced by the ticket's id), and the tag actions (space-separated tags): ``current_tags``
  adds, ``remove_tags`` removes, ``set_tags`` replaces. A trigger that changed the ticket starts
  the run again from the first trigger; each trigger fires at most once per update;
- an update replaces conditions and actions together: one sent alone leaves the other empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
IS = ("is", "is_not")
TEXT = ("includes", "not_includes", "is", "is_not")
OPERATORS = {
    "current_tags": ("includes", "not_includes"),
    "status": ("is", "is_not", "less_than", "greater_than"),
    **{f: IS for f in ("group_id", "brand_id", "organization_id", "assignee_id", "requester_id")},
    "via_id": IS,
    **{f: TEXT for f in ("comment_includes_word", "subject_includes_word")},
    "description_includes_word": TEXT,
}
CUSTOM_FIELD = re.compile(r"custom_fields_[0-9]+")
NOTIFY_WEBHOOK = "notification_webhook"
TAG_ACTIONS = ("current_tags", "remove_tags", "set_tags")


class TriggerInvalid(ValueError):
    """A trigger Zendesk would refuse (422), naming the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _condition(field: str, operator: str, value: str) -> dict[str, str]:
    return {"field": field, "operator": operator, "value": value}


def conditions_hold(conditions: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Zendesk's reading of a trigger's conditions against a ticket as it is now: ``facts`` has
    its ``status``, ``tags``, ids (None when unset), texts (``comment`` is the latest) and
    ``custom_fields_<id>`` values."""
    present = set(facts["tags"])

    def holds(condition: dict[str, str]) -> bool:
        field, operator, value = condition["field"], condition["operator"], condition["value"]
        if field == "current_tags":
            any_present = bool(set(value.lower().split()) & present)
            return any_present if operator == "includes" else not any_present
        if field == "status":
            mine, other = STATUS_RANK[facts["status"]], STATUS_RANK[value]
            if operator in IS:
                return (mine == other) is (operator == "is")
            return mine < other if operator == "less_than" else mine > other
        if field.endswith("_includes_word"):
            text: str = str(facts[field.removesuffix("_includes_word")] or "").lower()
            if operator in IS:
                return (text.strip() == value.lower().strip()) is (operator == "is")
            found = bool(set(value.lower().split()) & set(re.findall(r"\w+", text)))
            return found is (operator == "includes")
        mine_value = facts.get(field)
        same: bool = mine_value is not None and str(mine_value) == value
        return same is (operator == "is")

    every, some = conditions.get("all", []), conditions.get("any", [])
    return all(holds(c) for c in every) and (not some or any(holds(c) for c in some))


def apply_tag_action(action: dict[str, Any], tags: list[str]) -> list[str]:
    """The ticket's tags after one of a trigger's tag actions."""
    words = set(str(action["value"]).lower().split())
    if action["field"] == "current_tags":
        return sorted(set(tags) | words)
    if action["field"] == "remove_tags":
        return sorted(set(tags) - words)
    return sorted(words)


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
    if not isinstance(field, str):
        raise TriggerInvalid("conditions", "Conditions: each needs a field")
    allowed = IS if CUSTOM_FIELD.fullmatch(field) else OPERATORS.get(field)
    if allowed is None:
        raise TriggerInvalid("conditions", f"Conditions: field {field!r} is not supported")
    if operator not in allowed:
        raise TriggerInvalid("conditions", f"Conditions: {field} has no operator {operator!r}")
    if not isinstance(value, str) or not value.strip():
        raise TriggerInvalid("conditions", f"Conditions: {field} needs a value")
    if field == "status" and value not in STATUS_RANK:
        raise TriggerInvalid("conditions", f"Conditions: {value!r} is not a status")
    return _condition(field, operator, value)


def _actions(raw: Any, webhook_ids: set[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise TriggerInvalid("actions", "Actions: a trigger needs at least one")
    out: list[dict[str, Any]] = []
    for item in raw:
        field = item.get("field") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if field in TAG_ACTIONS:
            if not isinstance(value, str) or (field != "set_tags" and not value.strip()):
                raise TriggerInvalid("actions", f"Actions: {field} needs space-separated tags")
            out.append({"field": field, "value": value})
            continue
        if field != NOTIFY_WEBHOOK:
            supported = ", ".join((NOTIFY_WEBHOOK, *TAG_ACTIONS))
            raise TriggerInvalid("actions", f"Actions: supported are {supported}")
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
