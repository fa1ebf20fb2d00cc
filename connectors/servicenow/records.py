"""The records a ServiceNow desk needs, as data: one source for the update set XML
(``update_set.py``), ``setup --apply`` (``setup.py``) and ``doctor`` (``doctor.py``).

Each record is found by its natural key (a table's field by ``name`` + ``element``, a choice by
table, field and value, a property by ``name``, the business rule by table + name, the UI action
by table + ``action_name``, an ACL by ``name`` + ``operation`` + ``type``, a role by ``name``) and
carries a sys_id derived from that key, so the same desk always yields the same records and the
same file.

Setup owns only what Deskgate needs: a field in ``kept`` is written when the record is made and
afterwards only when it is empty (an admin may relabel a field, make the status field read-only
on forms, narrow the UI action's roles, turn an ACL's admin override off); a field in
``narrowable`` stands while it still holds Deskgate's value (an admin may add ``&& ...`` to the
UI action's condition). Setup reports such differences and never reverts them.

The fields Deskgate trusts are protected: a write ACL on the status field passes only the
``deskgate`` role (which Deskgate's integration user must hold), a write ACL on the flag field
and the UI action pass only the desk's ``verification_roles``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from connectors.action_requests import request_title
from connectors.identity_provider import ACTIONS
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.ticketing import MARKERS

RULE_NAME = "Deskgate identity verification push"
UI_ACTION_NAME = "Request identity verification"
UI_ACTION_ID = "deskgate_request_verification"
WEBHOOK_ROUTE = "/webhooks/servicenow"
# The role whose holders may write the status field: Deskgate's integration user, nobody else.
DESKGATE_ROLE = "deskgate"
STATUS_LABELS = {
    "pending": "Pending",
    "verified": "Verified",
    "failed": "Failed",
    "review": "Manual review",
    "expired": "Expired",
    "error": "Error",
}


def url_property(table: str) -> str:
    """The system property holding where the rule on ``table`` pushes. Named after the table,
    so two desks on one instance (a table each) push to their own endpoints."""
    return f"deskgate.{table}.webhook_url"


def secret_property(table: str) -> str:
    """The system property holding the key the rule on ``table`` signs with: its desk's own."""
    return f"deskgate.{table}.webhook_secret"


def script(name: str) -> str:
    """A script shipped beside this module (``business_rule.js``, ``ui_action.js``)."""
    return resources.files("connectors.servicenow").joinpath(name).read_text(encoding="utf-8")


def business_rule_script() -> str:
    return script("business_rule.js")


def sys_id_for(table: str, *key: str) -> str:
    """A stable 32-hex sys_id for a record of ``table`` with this natural key."""
    return hashlib.sha256("\x1f".join(("deskgate", table, *key)).encode()).hexdigest()[:32]


def sys_id_for_name(table: str, field: str, value: str) -> str:
    """The sys_id of a record setup makes whose natural key is ``field=value`` alone."""
    return sys_id_for(table, f"{field}={value}")


@dataclass(frozen=True)
class Wanted:
    """One record setup makes exist: ``key`` finds it, ``values`` is what it must hold."""

    table: str
    kind: str  # what an admin calls it: "field", "choice", "property", "business rule", ...
    name: str  # how setup's output names it
    key: dict[str, str]
    values: dict[str, str]  # includes the key
    secret: bool = False  # the value is never written to a file or printed
    kept: frozenset[str] = frozenset()  # the admin's value stands unless empty (module doc)
    narrowable: frozenset[str] = frozenset()  # the admin's value stands while it holds ours
    # Reference fields whose value here is the referenced record's name, not its sys_id:
    # field -> (table, the field that names it), e.g. a role by ``sys_user_role.name``.
    refs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    in_update_set: bool = True  # False: users' roles, which update sets never carry

    @property
    def sys_id(self) -> str:
        return sys_id_for(self.table, *(f"{k}={v}" for k, v in sorted(self.key.items())))

    @property
    def query(self) -> str:
        return "^".join(f"{k}={v}" for k, v in sorted(self.key.items()))

    def judge(self, name: str, found: str) -> str:
        """``ok`` (as wanted), ``kept`` (the admin's own value, which stands) or ``repair``."""
        want = self.values[name]
        if found == want:
            return "ok"
        if name in self.kept and found:
            return "kept"
        if name in self.narrowable and want in found:
            return "kept"
        return "repair"


def flag_is_boolean(config: ServiceNowDeskConfig) -> bool:
    return set(config.triggers) == {"true"}


def script_values(config: ServiceNowDeskConfig) -> list[str]:
    """The trigger values as ``GlideRecord.getValue`` returns them in a script: a boolean
    field reads "1"/"0" there (ServiceNow's GlideRecord API reference, getValue), while the
    config, the Table API and encoded queries say "true"/"false"."""
    if flag_is_boolean(config):
        return ["1"]
    return list(config.triggers)


def rule_condition(config: ServiceNowDeskConfig) -> str:
    """The business rule's condition: an active record whose flag field changed to a trigger,
    or whose action field changed to an action (a choice's ``getValue`` is its value)."""
    flag, act = config.flag_field, config.action_field  # plain identifiers (the config's pattern)
    values = json.dumps(script_values(config))  # a JavaScript array, whatever the values hold
    return (
        f"current.active == true && ((current.{flag}.changes() && "
        f"{values}.indexOf(current.getValue('{flag}')) >= 0) || (current.{act}.changes() && "
        f"{json.dumps(list(ACTIONS))}.indexOf(current.getValue('{act}')) >= 0))"
    )


def ui_action_script(config: ServiceNowDeskConfig) -> str:
    """``ui_action.js`` setting the desk's flag field to its first trigger value."""
    return set_field_script(config.flag_field, next(iter(config.triggers)))


def set_field_script(field: str, value: str) -> str:
    """``ui_action.js`` with its field and value, JSON-quoted."""
    return (
        script("ui_action.js")
        .replace("DESKGATE_FIELD", json.dumps(field))
        .replace("DESKGATE_VALUE", json.dumps(value))
    )


def action_ui_action_id(action: str) -> str:
    return f"deskgate_do_{action}"


def webhook_url(public_url: str, desk: str) -> str:
    """The desk's own endpoint: Deskgate checks a push there with that desk's secret only."""
    return f"{public_url.rstrip('/')}{WEBHOOK_ROUTE}/{desk}"


def roles_text(roles: list[str]) -> str:
    """A role list as a UI action's ``roles`` holds it: names, comma-separated."""
    return ",".join(roles)


def _field(table: str, element: str, label: str, boolean: bool) -> Wanted:
    values = {
        "name": table,
        "element": element,
        "column_label": label,
        "internal_type": "boolean" if boolean else "string",
        "max_length": "40",
        "choice": "0" if boolean else "1",  # 1: a drop-down with "-- None --"
        "active": "true",
        "read_only": "false",
    }
    key = {"name": table, "element": element}
    kept = frozenset({"column_label", "read_only"})
    return Wanted("sys_dictionary", "field", f"{table}.{element}", key, values, kept=kept)


def _role(name: str, description: str) -> Wanted:
    key = {"name": name}
    return Wanted("sys_user_role", "role", name, key, {**key, "description": description},
                  kept=frozenset({"description"}))  # fmt: skip


def write_acl_key(table: str, element: str) -> dict[str, str]:
    return {"name": f"{table}.{element}", "operation": "write", "type": "record"}


def _write_acl(table: str, element: str, roles: list[str], why: str) -> list[Wanted]:
    """A field's write ACL and its roles (one ``sys_security_acl_role`` each). An admin passes
    it anyway (``admin_overrides``): an admin can grant themselves any role, so refusing them
    protects nothing and only stands in the way of a repair."""
    key = write_acl_key(table, element)
    acl = Wanted(
        "sys_security_acl", "ACL", f"write {table}.{element}", key,
        {**key, "active": "true", "admin_overrides": "true", "description": why},
        kept=frozenset({"admin_overrides", "description"}),
    )  # fmt: skip
    return [acl] + [
        Wanted(
            "sys_security_acl_role",
            "ACL role",
            f"write {table}.{element}: {role}",
            {"sys_security_acl": acl.sys_id, "sys_user_role": role},
            {"sys_security_acl": acl.sys_id, "sys_user_role": role},
            refs={"sys_user_role": ("sys_user_role", "name")},
        )
        for role in roles
    ]


def integration_user_role(config: ServiceNowDeskConfig) -> Wanted:
    """Deskgate's integration user holds the deskgate role (not in an update set: users and
    their roles are data, which update sets never carry)."""
    key = {"user": config.note_author, "role": DESKGATE_ROLE}
    return Wanted(
        "sys_user_has_role", "user role", f"{config.note_author}: {DESKGATE_ROLE}", key, dict(key),
        refs={"user": ("sys_user", "user_name"), "role": ("sys_user_role", "name")},
        in_update_set=False,
    )  # fmt: skip


def _choice(table: str, element: str, value: str, label: str, sequence: int) -> Wanted:
    key = {"name": table, "element": element, "value": value}
    values = {**key, "label": label, "sequence": str(sequence), "language": "en",
              "inactive": "false"}  # fmt: skip
    return Wanted("sys_choice", "choice", f"{table}.{element}={value}", key, values)


def wanted(
    desk: str, config: ServiceNowDeskConfig, public_url: str, secret: str = ""
) -> list[Wanted]:
    """Everything the desk needs, in the order it must be made (fields before their choices,
    properties before the rule that reads them). ``secret`` fills the secret property's value
    (only ``--apply`` passes it; the update set leaves it empty)."""
    table, flag, status = config.table, config.flag_field, config.status_field
    boolean = flag_is_boolean(config)
    out = [_role(DESKGATE_ROLE, "Writes the identity verification status: Deskgate's "
                 "integration user only. Installed by `deskgate setup`.")]  # fmt: skip
    out.append(_field(table, flag, "Identity verification request", boolean))
    if not boolean:
        out += [
            _choice(table, flag, value, reason, i * 100)
            for i, (value, reason) in enumerate(config.triggers.items(), start=1)
        ]
    out.append(_field(table, status, "Identity verification status", False))
    out += [
        _choice(table, status, marker, STATUS_LABELS[marker], i * 100)
        for i, marker in enumerate(MARKERS, start=1)
    ]
    out += _write_acl(
        table, status, [DESKGATE_ROLE],
        "Only Deskgate writes the identity verification status. Installed by `deskgate setup`.",
    )  # fmt: skip
    # Deskgate's own user too: it sets the flag back to consumed_value after an outcome.
    out += _write_acl(
        table, flag, list(dict.fromkeys([*config.verification_roles, DESKGATE_ROLE])),
        "Only these roles may ask for an identity verification. Installed by `deskgate setup`.",
    )  # fmt: skip
    out += _action_request_field(config)
    out.append(integration_user_role(config))
    url_name, secret_name = url_property(table), secret_property(table)
    out.append(
        Wanted(
            "sys_properties", "property", url_name, {"name": url_name},
            {"name": url_name, "type": "string", "value": webhook_url(public_url, desk),
             "description": "Where the Deskgate business rule pushes flagged records."},
        )
    )  # fmt: skip
    out.append(
        Wanted(
            "sys_properties", "property", secret_name, {"name": secret_name},
            {"name": secret_name, "type": "password2", "value": secret,
             "description": "The key the Deskgate business rule signs its pushes with "
             "(the desk's webhook_secret in Deskgate)."},
            secret=True,
        )
    )  # fmt: skip
    out.append(
        Wanted(
            "sys_script", "business rule", RULE_NAME, {"collection": table, "name": RULE_NAME},
            {"collection": table, "name": RULE_NAME, "when": "after", "order": "100",
             "active": "true", "advanced": "true", "action_insert": "true",
             "action_update": "true", "action_delete": "false", "action_query": "false",
             "condition": rule_condition(config), "script": business_rule_script(),
             "description": "Pushes a signed notice to Deskgate when a record is flagged "
             "for identity verification. Installed by `deskgate setup`."},
        )
    )  # fmt: skip
    out.append(
        Wanted(
            "sys_ui_action", "UI action", UI_ACTION_NAME,
            {"table": table, "action_name": UI_ACTION_ID},
            {"table": table, "action_name": UI_ACTION_ID, "name": UI_ACTION_NAME,
             "active": "true", "client": "false", "form_button": "true", "form_action": "true",
             "form_context_menu": "false", "list_context_menu": "false", "order": "100",
             # On a saved record only: the push names the record, which must exist.
             "show_insert": "false", "show_update": "true",
             "roles": roles_text(list(config.verification_roles)),
             # Not while a verification is open: the flag would be set for nothing.
             "condition": f"current.active == true && current.getValue('{status}') != 'pending'"
             f" && current.getValue('{status}') != 'review'",
             "script": ui_action_script(config)},
            kept=frozenset({"roles"}), narrowable=frozenset({"condition"}),
        )
    )  # fmt: skip
    out += [_action_ui_action(config, action) for action in ACTIONS]
    return out


def _action_request_field(config: ServiceNowDeskConfig) -> list[Wanted]:
    """The choice field an agent sets to ask for an identity-provider action, one choice per
    action, and its write ACL: the verification roles ask, Deskgate's user clears it."""
    table, field = config.table, config.action_field
    out = [_field(table, field, "Identity provider action request", False)]
    out += [
        _choice(table, field, action, request_title(action).removeprefix("Deskgate: "), i * 100)
        for i, action in enumerate(ACTIONS, start=1)
    ]
    return out + _write_acl(
        table, field, list(dict.fromkeys([*config.verification_roles, DESKGATE_ROLE])),
        "Only these roles may ask for an identity provider action. Installed by "
        "`deskgate setup`.",
    )  # fmt: skip


def _action_ui_action(config: ServiceNowDeskConfig, action: str) -> Wanted:
    """A form button setting the action field, for the verification roles, shown only on a
    record whose verification ended verified (the only result an action may follow)."""
    table, status, key = config.table, config.status_field, action_ui_action_id(action)
    return Wanted(
        "sys_ui_action", "UI action", request_title(action),
        {"table": table, "action_name": key},
        {"table": table, "action_name": key, "name": request_title(action),
         "active": "true", "client": "false", "form_button": "true", "form_action": "true",
         "form_context_menu": "false", "list_context_menu": "false", "order": "200",
         "show_insert": "false", "show_update": "true",
         "roles": roles_text(list(config.verification_roles)),
         "condition": f"current.active == true && current.getValue('{status}') == 'verified'",
         "script": set_field_script(config.action_field, action)},
        kept=frozenset({"roles"}), narrowable=frozenset({"condition"}),
    )  # fmt: skip
