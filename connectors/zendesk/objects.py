"""The Zendesk objects a desk needs, as ``deskgate setup`` writes them and ``deskgate doctor``
reads them back: their names and their exact definitions, in one place.

The trigger fires once per flag. Zendesk runs every active trigger on every update of a ticket
and remembers nothing, so the conditions themselves must turn false once Deskgate holds the
ticket: "a trigger tag is on it", "none of Deskgate's open markers (``pending``, ``review``) is on
it", "status below solved". The gate write adds ``pending`` (false from then on: a requester's
reply, an agent's comment, Deskgate's own writes push nothing); a final outcome removes the
trigger tag (still false); flagging the ticket again later makes it true once more.
"""

from __future__ import annotations

from typing import Any

from connectors.action_requests import request_title
from connectors.identity_provider import ACTIONS
from connectors.ticketing import OPEN_MARKERS
from connectors.zendesk.config import ZendeskDeskConfig

KIND = "zendesk"
CATEGORY = "Deskgate"
SUBSCRIPTIONS = ["conditional_ticket_events"]  # a webhook triggers and automations can notify
PUSH_BODY = '{"ticket_id": "{{ticket.id}}"}'  # all Deskgate reads from a push (push.py)
NOTIFY = "notification_webhook"


def webhook_name(desk: str) -> str:
    return f"Deskgate - {desk}"


def trigger_title(desk: str) -> str:
    return f"Deskgate: identity verification ({desk})"


def macro_title(reason: str) -> str:
    return f"Verify identity: {reason}"


def endpoint(public_url: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/{KIND}"


def secret_env(desk: str) -> str:
    return f"DESKGATE_DESKS__{desk.upper()}__WEBHOOK_SECRET"


def open_markers(config: ZendeskDeskConfig) -> list[str]:
    return [config.tag_prefix + m for m in sorted(OPEN_MARKERS)]


def webhook(desk: str, public_url: str) -> dict[str, Any]:
    return {
        "name": webhook_name(desk),
        "status": "active",
        "endpoint": endpoint(public_url),
        "http_method": "POST",
        "request_format": "json",
        "subscriptions": SUBSCRIPTIONS,
        "description": "Deskgate: identity verification pushes (made by `deskgate setup`)",
    }


def trigger(
    desk: str, config: ZendeskDeskConfig, webhook_id: str, category_id: str
) -> dict[str, Any]:
    """The whole trigger: an update must send all of it (Zendesk replaces conditions and
    actions together)."""
    return {
        "title": trigger_title(desk),
        "active": True,
        "description": "Asks Deskgate to verify the requester once per flag (`deskgate setup`).",
        "category_id": category_id,
        "conditions": {"all": required_conditions(config), "any": []},
        "actions": [push(webhook_id)],
    }


def required_conditions(config: ZendeskDeskConfig) -> list[dict[str, str]]:
    """What makes the trigger fire once per flag (the module's docstring)."""
    return [
        _condition("current_tags", "includes", " ".join(sorted(config.triggers))),
        _condition("current_tags", "not_includes", " ".join(open_markers(config))),
        _condition("status", "less_than", "solved"),
    ]


def push(webhook_id: str) -> dict[str, Any]:
    return {"field": NOTIFY, "value": [webhook_id, PUSH_BODY]}


def macro(tag: str, reason: str) -> dict[str, Any]:
    """The agent's one-click flag: adds the trigger tag, leaves every other tag alone."""
    return {
        "title": macro_title(reason),
        "active": True,
        "description": "Asks Deskgate to verify the requester's identity with Incode.",
        "actions": [{"field": "current_tags", "value": tag}],
    }


def _condition(field: str, operator: str, value: str) -> dict[str, str]:
    return {"field": field, "operator": operator, "value": value}


def same_trigger(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Does the trigger Zendesk holds do what ``wanted`` does (order of tags and conditions
    aside)?"""

    def shape(t: dict[str, Any]) -> tuple[Any, ...]:
        conditions = t.get("conditions") or {}
        groups = tuple(
            sorted(
                (c.get("field"), c.get("operator"), " ".join(sorted(str(c.get("value")).split())))
                for c in conditions.get(group) or []
            )
            for group in ("all", "any")
        )
        actions = sorted(str((a.get("field"), a.get("value"))) for a in t.get("actions") or [])
        return t.get("active"), groups, actions

    return shape(found) == shape(wanted)


# Statuses a "status less than" condition may name and still let a flag on an open ticket push:
# "solved" is Deskgate's; an earlier one is an admin's stricter choice (kept, reported).
BELOW_SOLVED = ("new", "open", "pending", "hold", "solved")
# Actions that would undo the flag or the gate the moment the trigger fires: never kept.
UNSAFE_ACTIONS = ("current_tags", "remove_tags", "set_tags", "status")


def reconcile_trigger(
    found: dict[str, Any], config: ZendeskDeskConfig, webhook_id: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The trigger setup writes back over ``found``: what Deskgate needs, repaired, and every
    condition an admin added kept, since an added condition can only make the trigger fire on
    fewer tickets (flags it misses wait for the poller). Returns the definition, the admin's
    additions kept, and what was dropped because it would break Deskgate.

    Deskgate's own conditions are recognised by what they test: the tag condition naming the
    trigger tags (rewritten to name exactly them), an exclusion naming an open marker
    (every marker added, the admin's extra tags kept), a "status less than" condition (solved,
    unless the admin chose an earlier status)."""
    triggers, markers = set(config.triggers), set(open_markers(config))
    conditions = found.get("conditions") or {}
    every: list[dict[str, str]] = []
    kept: list[str] = []
    excluded: set[str] = set()
    status = "solved"
    flagged = [
        c
        for c in conditions.get("all") or []
        if c.get("field") == "current_tags"
        and c.get("operator") == "includes"
        and triggers & set(str(c.get("value", "")).split())
    ]
    # Deskgate's tag condition: the one naming every trigger tag, else the nearest (repaired);
    # another naming some of them is an admin's narrowing.
    ours = next((c for c in flagged if triggers <= set(str(c["value"]).split())), None)
    ours = ours or (flagged[0] if flagged else None)
    for c in conditions.get("all") or []:
        field, operator, words = c.get("field"), c.get("operator"), str(c.get("value", ""))
        if c is ours:
            continue
        if field == "current_tags" and operator == "not_includes" and markers & set(words.split()):
            excluded |= set(words.split()) - markers
            continue
        if field == "status" and operator == "less_than":
            if words in BELOW_SOLVED:  # the strictest of them, if several
                status = min(status, words, key=BELOW_SOLVED.index)
            continue
        every.append(dict(c))  # as Zendesk gave it
        kept.append(describe(c))
    if excluded:
        kept.append(f"also excludes the tags {' '.join(sorted(excluded))}")
    if status != "solved":
        kept.append(f"status less than {status}")
    some = [dict(c) for c in conditions.get("any") or []]
    if some:
        kept.append("any of: " + "; ".join(describe(c) for c in some))
    includes, not_includes, below = required_conditions(config)
    not_includes["value"] = " ".join(sorted(markers | excluded))
    below["value"] = status
    actions, dropped = [push(webhook_id)], []
    for a in found.get("actions") or []:
        value = a.get("value")
        if a.get("field") == NOTIFY and (
            not isinstance(value, list) or value[:1] == [webhook_id] or value[1:] == [PUSH_BODY]
        ):
            continue  # Deskgate's push (maybe to an older webhook of its): the one above
        if a.get("field") in UNSAFE_ACTIONS:
            dropped.append(describe(a))
        else:
            actions.append(dict(a))
            kept.append(f"action {describe(a)}")
    definition = {
        "title": found.get("title"),
        "active": True,
        "conditions": {"all": [includes, not_includes, below, *every], "any": some},
        "actions": actions,
    }
    return definition, kept, dropped


def describe(item: dict[str, Any]) -> str:
    """A condition or action as one short phrase (``group_id is 123``)."""
    value = item.get("value")
    shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return " ".join(str(p) for p in (item.get("field"), item.get("operator"), shown) if p)


def same_macro(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def actions(m: dict[str, Any]) -> list[str]:
        return sorted(str((a.get("field"), a.get("value"))) for a in m.get("actions") or [])

    return bool(found.get("active")) and actions(found) == actions(wanted)


def reconcile_macro(
    found: dict[str, Any], tag: str, reason: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The macro setup writes back over ``found``: active, with Deskgate's tag action, and an
    admin's other actions and access restriction kept (they change what else the macro does or
    who may use it, never whether it flags); an action removing the tag is dropped. Returns the
    definition, what was kept and what was dropped."""
    ours = macro(tag, reason)["actions"][0]
    actions, kept, dropped = [ours], [], []
    for a in found.get("actions") or []:
        if a == ours:
            continue
        if a.get("field") == "remove_tags" and tag in str(a.get("value", "")).split():
            dropped.append(describe(a))
        else:
            actions.append(dict(a))
            kept.append(f"action {describe(a)}")
    if found.get("restriction"):
        kept.append(f"restricted to {describe_restriction(found['restriction'])}")
    definition = {"title": found.get("title"), "active": True, "actions": actions}
    return definition, kept, dropped


def describe_restriction(restriction: Any) -> str:
    if not isinstance(restriction, dict):
        return str(restriction)
    ids = restriction.get("ids") or [restriction.get("id")]
    return f"{restriction.get('type', '?')} {' '.join(str(i) for i in ids)}"


def trigger_problems(
    found: dict[str, Any], config: ZendeskDeskConfig, webhook_id: str | None
) -> dict[str, str]:
    """What is wrong with the trigger Zendesk holds, by check name (empty: nothing).

    ``webhook_id`` None: the webhook could not be read, so only the body is checked."""
    conditions = found.get("conditions") or {}
    every = conditions.get("all") or []

    def values(field: str, operator: str) -> set[str]:
        return {
            word
            for c in every
            if c.get("field") == field and c.get("operator") == operator
            for word in str(c.get("value", "")).split()
        }

    problems: dict[str, str] = {}
    if not found.get("active"):
        problems["active"] = "the trigger is inactive: flagged tickets wait for the poller"
    missing = sorted(set(config.triggers) - values("current_tags", "includes"))
    if missing:
        problems["fires on the trigger tags"] = f"it does not fire on {', '.join(missing)}"
    unguarded = sorted(set(open_markers(config)) - values("current_tags", "not_includes"))
    below_solved = values("status", "less_than") & set(BELOW_SOLVED)
    if unguarded or not below_solved:
        why = (
            f"no 'tags contain none of {' '.join(unguarded)}' condition"
            if unguarded
            else "no 'status less than solved' condition"
        )
        problems["cannot re-fire on Deskgate's writes"] = (
            f"{why}: it would push on the gate write and every reply while the ticket is held"
        )
    actions = found.get("actions") or []
    pushes = [a for a in actions if a.get("field") == NOTIFY]
    value = pushes[0].get("value") if len(pushes) == 1 else None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or (webhook_id is not None and value[0] != webhook_id)
        or "{{ticket.id}}" not in str(value[1])
        or '"ticket_id"' not in str(value[1])
    ):
        problems["notifies Deskgate's webhook"] = (
            'its action must be one "Notify by webhook" to Deskgate\'s webhook with body '
            f"{PUSH_BODY}"
        )
    unsafe = [describe(a) for a in actions if a.get("field") in UNSAFE_ACTIONS]
    if unsafe:
        problems["leaves tags and status alone"] = (
            f"its actions {'; '.join(unsafe)} could undo the flag or the gate as it fires"
        )
    return problems


# -- action requests (issue #18) ---------------------------------------------------------------
#
# After a verified result an agent asks Deskgate for an identity-provider action by a macro that
# adds the tag ``<prefix>do_<action>``. A second trigger pushes the ticket, exactly as for a flag.
# Zendesk runs every trigger on every update, so this one fires once per request through the
# guard Zendesk's own trigger guide prescribes: an action of the trigger nullifies a condition
# (it adds ``<prefix>action_sent``; the condition wants it absent). Deskgate's ``clear_action``
# removes both tags, so the next request pushes again. A lost push waits for the poller.

ACTION_INFIX = "do_"


def desk_actions(config: ZendeskDeskConfig) -> list[str]:
    """The actions agents may ask for on this desk. Every action an IdP kind knows, until the
    settings say per reason which are allowed (the worker refuses one a reason does not allow)."""
    del config  # the per-reason list is the settings' to give
    return list(ACTIONS)


def action_tag(config: ZendeskDeskConfig, action: str) -> str:
    return f"{config.tag_prefix}{ACTION_INFIX}{action}"


def action_sent_tag(config: ZendeskDeskConfig) -> str:
    """The trigger's own guard (not under ``do_``: it is no request)."""
    return f"{config.tag_prefix}action_sent"


def action_tags(config: ZendeskDeskConfig) -> list[str]:
    return [action_tag(config, a) for a in desk_actions(config)]


def action_trigger_title(desk: str) -> str:
    return f"Deskgate action request ({desk})"


def action_macro_title(action: str) -> str:
    return request_title(action)


def action_macro(config: ZendeskDeskConfig, action: str) -> dict[str, Any]:
    """The agent's one-click request: adds the action's tag, leaves every other tag alone."""
    return {
        "title": action_macro_title(action),
        "active": True,
        "description": "Asks Deskgate to perform this action in the identity provider "
        "(after a verified result only).",
        "actions": [{"field": "current_tags", "value": action_tag(config, action)}],
    }


def action_conditions(config: ZendeskDeskConfig) -> list[dict[str, str]]:
    return [
        _condition("current_tags", "includes", " ".join(sorted(action_tags(config)))),
        _condition("current_tags", "not_includes", action_sent_tag(config)),
        _condition("status", "less_than", "solved"),
    ]


def action_trigger_actions(config: ZendeskDeskConfig, webhook_id: str) -> list[dict[str, Any]]:
    return [push(webhook_id), {"field": "current_tags", "value": action_sent_tag(config)}]


def action_trigger(
    desk: str, config: ZendeskDeskConfig, webhook_id: str, category_id: str
) -> dict[str, Any]:
    return {
        "title": action_trigger_title(desk),
        "active": True,
        "description": "Asks Deskgate to perform an identity-provider action, once per request "
        "(`deskgate setup`).",
        "category_id": category_id,
        "conditions": {"all": action_conditions(config), "any": []},
        "actions": action_trigger_actions(config, webhook_id),
    }


def reconcile_action_trigger(
    found: dict[str, Any], config: ZendeskDeskConfig, webhook_id: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """As ``reconcile_trigger`` for the action trigger: Deskgate's conditions and actions
    repaired, an admin's added conditions (which can only make it fire less) and harmless actions
    kept; an action changing tags or status is dropped (it could undo the request or the guard).
    Returns the definition, what was kept and what was dropped."""
    ours = action_conditions(config)
    wanted_actions = action_trigger_actions(config, webhook_id)
    conditions = found.get("conditions") or {}
    every, kept = [], []
    owned = {*action_tags(config), action_sent_tag(config)}
    for c in conditions.get("all") or []:
        field, operator = c.get("field"), c.get("operator")
        words = set(str(c.get("value", "")).split())
        if (field == "current_tags" and words & owned) or (field, operator) == (
            "status",
            "less_than",
        ):
            continue  # Deskgate's own, rewritten as ``ours``
        every.append(dict(c))
        kept.append(describe(c))
    some = [dict(c) for c in conditions.get("any") or []]
    if some:
        kept.append("any of: " + "; ".join(describe(c) for c in some))
    actions, dropped = list(wanted_actions), []
    for a in found.get("actions") or []:
        if a in wanted_actions or a.get("field") == NOTIFY:
            continue  # Deskgate's push (maybe to an older webhook of its) and guard: above
        if a.get("field") in UNSAFE_ACTIONS:
            dropped.append(describe(a))
        else:
            actions.append(dict(a))
            kept.append(f"action {describe(a)}")
    definition = {
        "title": found.get("title"),
        "active": True,
        "conditions": {"all": [*ours, *every], "any": some},
        "actions": actions,
    }
    return definition, kept, dropped


def action_trigger_problems(
    found: dict[str, Any], config: ZendeskDeskConfig, webhook_id: str | None
) -> dict[str, str]:
    """What is wrong with the action trigger Zendesk holds, by check name (empty: nothing)."""
    every = (found.get("conditions") or {}).get("all") or []
    problems: dict[str, str] = {}
    if not found.get("active"):
        problems["active"] = "the trigger is inactive: action requests wait for the poller"
    includes = {
        w
        for c in every
        if (c.get("field"), c.get("operator")) == ("current_tags", "includes")
        for w in str(c.get("value", "")).split()
    }
    missing = sorted(set(action_tags(config)) - includes)
    if missing:
        problems["fires on the action tags"] = f"it does not fire on {', '.join(missing)}"
    sent = action_sent_tag(config)
    guarded = any(
        (c.get("field"), c.get("operator")) == ("current_tags", "not_includes")
        and sent in str(c.get("value", "")).split()
        for c in every
    )
    actions = found.get("actions") or []
    adds_sent = any(
        a.get("field") == "current_tags" and sent in str(a.get("value", "")).split()
        for a in actions
    )
    if not (guarded and adds_sent):
        problems["fires once per request"] = (
            f"it must add the tag {sent} and fire only while it is absent: otherwise every "
            "update of the ticket pushes again"
        )
    pushes = [a.get("value") for a in actions if a.get("field") == NOTIFY]
    value = pushes[0] if len(pushes) == 1 else None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or (webhook_id is not None and value[0] != webhook_id)
        or "{{ticket.id}}" not in str(value[1])
    ):
        problems["notifies Deskgate's webhook"] = (
            'its action must be one "Notify by webhook" to Deskgate\'s webhook with body '
            f"{PUSH_BODY}"
        )
    guard = {"field": "current_tags", "value": sent}
    unsafe = [describe(a) for a in actions if a.get("field") in UNSAFE_ACTIONS and a != guard]
    if unsafe:
        problems["leaves the request alone"] = (
            f"its actions {'; '.join(unsafe)} could undo the request as it fires"
        )
    return problems
