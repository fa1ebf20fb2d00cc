"""Where a caller could flag their own ticket on a Zendesk account (``deskgate doctor``).

A flag is a trigger tag on a ticket. Deskgate's trigger, macro and agents add it; nothing a
requester writes should. Two configurations let a requester add it anyway:

- a ticket field end users may edit on the Help Center's request form (``editable_in_portal``)
  whose choice puts a trigger tag on the ticket: a ``tagger``/``multiselect`` option whose
  ``value`` is the tag, or a ``checkbox`` whose ``tag`` is;
- a trigger or automation (not Deskgate's own) whose actions add a trigger tag (``current_tags``
  adds, ``set_tags`` replaces the list) when a condition reads something the requester wrote or
  chose: the ticket's text, the channel it came in by, a field they may edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Conditions (Zendesk's conditions reference) whose value the requester decides: the text they
# write, the channel and address they write to, the form and brand they pick, who they are.
REQUESTER_CONDITIONS = (
    "comment_includes_word",
    "subject_includes_word",
    "description_includes_word",
    "via_id",
    "current_via_id",
    "recipient",
    "ticket_form_id",
    "brand_id",
    "requester_id",
    "organization_id",
)
FLAGGING_ACTIONS = ("current_tags", "set_tags")
CUSTOM_FIELD = re.compile(r"custom_fields_([0-9]+)")


@dataclass(frozen=True)
class Finding:
    what: str  # "ticket field 'Reason' (360200008)", "trigger 'Auto MFA' (360000002)"
    detail: str
    fix: str


def field_tags(field: dict[str, Any]) -> set[str]:
    """The tags choosing a value of ``field`` puts on a ticket."""
    if field.get("type") == "checkbox":
        return {str(field["tag"]).lower()} if field.get("tag") else set()
    options = field.get("custom_field_options") or []
    return {str(o.get("value", "")).lower() for o in options if isinstance(o, dict)}


def end_user_fields(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The active fields a requester may set on the request form."""
    return [f for f in fields if f.get("active", True) and f.get("editable_in_portal")]


def flagging_fields(fields: list[dict[str, Any]], flags: set[str]) -> list[Finding]:
    found = []
    for field in end_user_fields(fields):
        tags = sorted(field_tags(field) & flags)
        if tags:
            found.append(
                Finding(
                    f"ticket field {field.get('title')!r} ({field.get('id')})",
                    f"end users can edit it on the request form and it sets {' '.join(tags)}: "
                    "a caller can flag their own ticket",
                    "make it editable by agents only (Admin Center > Objects and rules > "
                    "Tickets > Fields > the field > Permissions), or give its options tags "
                    "that are not Deskgate trigger tags",
                )
            )
    return found


def flagging_rules(
    kind: str, rules: list[dict[str, Any]], flags: set[str], fields: list[dict[str, Any]]
) -> list[Finding]:
    """The triggers or automations (``kind``) that add a trigger tag on what a requester
    controls. Deskgate's own trigger adds no tag, so it never appears here."""
    editable = {str(f.get("id")) for f in end_user_fields(fields)}

    def requester_controlled(condition: dict[str, Any]) -> bool:
        field = str(condition.get("field", ""))
        custom = CUSTOM_FIELD.fullmatch(field)
        return field in REQUESTER_CONDITIONS or (custom is not None and custom[1] in editable)

    found = []
    for rule in rules:
        if not rule.get("active", True):
            continue
        tags = sorted(
            flags
            & {
                word
                for a in rule.get("actions") or []
                if a.get("field") in FLAGGING_ACTIONS
                for word in str(a.get("value", "")).lower().split()
            }
        )
        conditions = rule.get("conditions") or {}
        read = sorted(
            {
                str(c.get("field"))
                for group in ("all", "any")
                for c in conditions.get(group) or []
                if requester_controlled(c)
            }
        )
        if tags and read:
            found.append(
                Finding(
                    f"{kind} {rule.get('title')!r} ({rule.get('id')})",
                    f"adds {' '.join(tags)} on conditions the requester controls "
                    f"({', '.join(read)}): a caller can flag their own ticket",
                    f"flag tickets by an agent's decision (Deskgate's macro) instead: remove the "
                    f"tag action from this {kind}, or make its conditions read only what agents "
                    "set",
                )
            )
    return found
