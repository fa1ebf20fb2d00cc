"""The records a ServiceNow desk needs, as data: one source for the update set XML
(``update_set.py``), ``setup --apply`` (``setup.py``) and ``doctor`` (``doctor.py``).

Each record is found by its natural key (a table's field by ``name`` + ``element``, a choice by
table, field and value, a property by ``name``, the business rule by table + name, the UI action
by table + ``action_name``) and carries a sys_id derived from that key, so the same desk always
yields the same records and the same file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.ticketing import MARKERS

RULE_NAME = "Deskgate identity verification push"
UI_ACTION_NAME = "Request identity verification"
UI_ACTION_ID = "deskgate_request_verification"
WEBHOOK_ROUTE = "/webhooks/servicenow"
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


@dataclass(frozen=True)
class Wanted:
    """One record setup makes exist: ``key`` finds it, ``values`` is what it must hold."""

    table: str
    kind: str  # what an admin calls it: "field", "choice", "property", "business rule", ...
    name: str  # how setup's output names it
    key: dict[str, str]
    values: dict[str, str]  # includes the key
    secret: bool = False  # the value is never written to a file or printed

    @property
    def sys_id(self) -> str:
        return sys_id_for(self.table, *(f"{k}={v}" for k, v in sorted(self.key.items())))

    @property
    def query(self) -> str:
        return "^".join(f"{k}={v}" for k, v in sorted(self.key.items()))


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
    """The business rule's condition: an active record whose flag field changed to a trigger."""
    flag = config.flag_field  # a plain identifier (the config's pattern)
    values = json.dumps(script_values(config))  # a JavaScript array, whatever the values hold
    return (
        f"current.active == true && current.{flag}.changes() && "
        f"{values}.indexOf(current.getValue('{flag}')) >= 0"
    )


def ui_action_script(config: ServiceNowDeskConfig) -> str:
    """``ui_action.js`` with the desk's flag field and first trigger value, JSON-quoted."""
    return (
        script("ui_action.js")
        .replace("DESKGATE_FLAG_FIELD", json.dumps(config.flag_field))
        .replace("DESKGATE_FLAG_VALUE", json.dumps(next(iter(config.triggers))))
    )


def webhook_url(public_url: str, desk: str) -> str:
    """The desk's own endpoint: Deskgate checks a push there with that desk's secret only."""
    return f"{public_url.rstrip('/')}{WEBHOOK_ROUTE}/{desk}"


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
    return Wanted("sys_dictionary", "field", f"{table}.{element}", key, values)


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
    out = [_field(table, flag, "Identity verification request", boolean)]
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
             "active": "true", "client": "false", "form_button": "true",
             "form_context_menu": "false", "list_context_menu": "false", "order": "100",
             # Not while a verification is open: the flag would be set for nothing.
             "condition": f"current.active == true && current.getValue('{status}') != 'pending'"
             f" && current.getValue('{status}') != 'review'",
             "script": ui_action_script(config)},
        )
    )  # fmt: skip
    return out
