"""A faithful ServiceNow Table API simulator (Flask), for tests and the demo.

What it emulates, and why each piece matters to Deskgate:

- ``/api/now/table/{table}`` (and ``/api/now/v2/...``) with ServiceNow's envelopes, string-only
  values, reference-field link objects, ``sysparm_*`` parameters, ``X-Total-Count`` and ``Link``
  paging headers — the shapes the connector must parse;
- encoded queries with the platform's precedence (``^OR`` binds tighter than ``^``) and its habit of
  silently ignoring conditions on unknown fields (see ``servicenow_query``);
- journal fields: ``work_notes``/``comments`` writes become ``sys_journal_field`` rows and never
  show on the record, so notes must be read back from the journal;
- Basic auth and ``/oauth_token.do`` (password, refresh_token, client_credentials grants);
- the metadata ``deskgate setup`` writes (``sys_dictionary``, ``sys_choice``, ``sys_properties``,
  ``sys_script``, ``sys_ui_action``, the ACL tables): admin-only writes (403 for anyone else, as
  the platform's ACLs), a ``sys_dictionary`` insert adds the column to its table;
- write ACLs as records (``sys_security_acl``, its roles in ``sys_security_acl_role``, users'
  roles in ``sys_user_has_role``): a field ACL the writer fails drops that field from a Table API
  write, which still answers 200; a table ACL they fail answers 403 (see ``acl_allows``);
- update set XML import as an admin does it in the UI: ``POST /sys_upload.do`` (the XML as the
  multipart field ``attachFile``) loads it into Retrieved Update Sets, then
  ``POST /sys_remote_update_set/<sys_id>/preview`` and ``.../commit``, each update through its
  record type's handler (``servicenow_updates``);
- the stock roles ``admin``, ``itil`` and ``security_admin``, and the integration user's
  ``sys_user`` record (setup grants it the ``deskgate`` role);
- server-side scripts: the active business rules of a table run on insert and update (``when``,
  ``action_insert``/``action_update``, ``filter_condition``, ``condition``, ``order``) and a UI
  action's script runs when ``/_sandbox/ui_action`` "clicks" it, in an ES5 engine with Glide shims
  (``servicenow_scripts``); a script's ``RESTMessageV2.executeAsync()`` is sent after the
  transaction, retried on 5xx, and logged (``/_sandbox/webhook_deliveries``);
- the shared ``/_sandbox/`` controls plus ServiceNow's rate-limit headers.

All state lives in ``ServiceNowState`` behind one lock; the server is threaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import httpx
from flask import Response, g, jsonify, request
from pydantic import SecretStr
from werkzeug.exceptions import HTTPException

from connectors.provisioning import AdminCredential, Change, SetupRequest
from connectors.servicenow import update_set
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import no_audit
from connectors.servicenow.records import DESKGATE_ROLE, secret_property
from connectors.servicenow.setup import setup
from sandbox import servicenow_query as snq
from sandbox import servicenow_scripts as scripts
from sandbox import servicenow_updates as updates
from sandbox.common import CONTROL_PREFIX, Controls, WebhookClient, on_stop
from sandbox.options import Wiring
from sandbox.servicenow_driver import DESK, FLAG_FIELD, TRIGGERS, ServiceNowDriver
from sandbox.simulator import Simulator

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SYSTEM_FIELDS = (
    "sys_id",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
)
# sys_journal_field rows are insert-only on the platform: they carry no update bookkeeping.
JOURNAL_SYSTEM_FIELDS = ("sys_id", "sys_created_on", "sys_created_by")
JOURNAL_TABLE = "sys_journal_field"
AUDIT_TABLE = "sys_audit"  # one row per field an update changed, as the platform's auditing
INSERT_ONLY = (JOURNAL_TABLE, AUDIT_TABLE)
# Metadata: anyone signed in reads it; only an admin writes it (the platform's ACLs).
METADATA = (
    "sys_dictionary",
    "sys_choice",
    "sys_properties",
    "sys_script",
    "sys_ui_action",
    "sys_remote_update_set",
    "sys_documentation",
    "sys_choice_set",
    "sys_user_role",
    "sys_user_has_role",
    "sys_security_acl",
    "sys_security_acl_role",
)
UNAUDITED = (*INSERT_ONLY, *METADATA)
BOOLEAN_FIELDS = ("active",)  # besides the boolean columns sys_dictionary adds
JOURNAL_FIELDS = {"work_notes": "Work notes", "comments": "Additional comments"}

REFERENCES: dict[str, dict[str, str]] = {
    "incident": {"caller_id": "sys_user", "assigned_to": "sys_user"},
    "sc_req_item": {"requested_for": "sys_user", "assigned_to": "sys_user"},
    # A column's type is a reference to the type's record, as on an instance: without
    # sysparm_exclude_reference_link it reads {"link": ..., "value": "string"}.
    "sys_dictionary": {"internal_type": "sys_glide_object"},
    "sys_user_has_role": {"user": "sys_user", "role": "sys_user_role"},
    "sys_security_acl_role": {
        "sys_security_acl": "sys_security_acl",
        "sys_user_role": "sys_user_role",
    },
}
DISPLAY_FIELD = {
    "sys_user": "name",
    "incident": "number",
    "sc_req_item": "number",
    "sn_customerservice_case": "number",
    "sys_choice": "label",
    "sys_properties": "name",
    "sys_script": "name",
    "sys_ui_action": "name",
    "sys_user_role": "name",
    "sys_security_acl": "name",
}
NUMBER_PREFIX = {
    "incident": "INC",
    "sc_req_item": "RITM",
    "sn_customerservice_case": "CS",
    "problem": "PRB",
    "change_request": "CHG",
}
_TASK_FIELDS = (
    "number",
    "short_description",
    "description",
    "state",
    "active",
    "assigned_to",
    "opened_at",
    "work_notes",
    "comments",
)
BASE_SCHEMA: dict[str, tuple[str, ...]] = {
    "incident": (
        *_TASK_FIELDS,
        "caller_id",
        "impact",
        "urgency",
        "priority",
        "hold_reason",
        "category",
        "subcategory",
        "close_code",
        "close_notes",
    ),
    "sc_req_item": (*_TASK_FIELDS, "requested_for", "cat_item"),
    "sys_user": (
        "user_name",
        "first_name",
        "last_name",
        "name",
        "email",
        "mobile_phone",
        "phone",
        "employee_number",
        "active",
    ),
    JOURNAL_TABLE: ("element", "element_id", "name", "value"),
    AUDIT_TABLE: ("tablename", "documentkey", "fieldname", "oldvalue", "newvalue", "user"),
    "sys_choice": ("name", "element", "value", "label", "sequence", "language", "inactive"),
    "sys_dictionary": ("name", "element", "column_label", "internal_type", "max_length",
                       "choice", "active", "read_only", "reference", "default_value",
                       "attributes"),
    "sys_properties": ("name", "value", "type", "description", "is_private", "suffix"),
    "sys_script": ("name", "collection", "when", "order", "active", "advanced",
                   "action_insert", "action_update", "action_delete", "action_query",
                   "filter_condition", "condition", "script", "description"),
    "sys_ui_action": ("name", "table", "action_name", "script", "condition", "active", "client",
                      "order", "form_button", "form_action", "form_context_menu",
                      "list_context_menu", "show_insert", "show_update", "roles"),
    "sys_remote_update_set": ("name", "description", "state", "application"),
    "sys_documentation": ("name", "element", "label", "language"),
    "sys_choice_set": ("name", "element"),
    "sys_user_role": ("name", "description"),
    "sys_user_has_role": ("user", "role", "state"),
    "sys_security_acl": ("name", "operation", "type", "active", "admin_overrides", "condition",
                         "script", "description"),
    "sys_security_acl_role": ("sys_security_acl", "sys_user_role"),
}  # fmt: skip
DEFAULTS: dict[str, dict[str, str]] = {
    "incident": {"state": "1", "active": "true", "impact": "3", "urgency": "3", "priority": "3"},
    "sc_req_item": {"state": "1", "active": "true"},
    "sys_user": {"active": "true"},
}
# The platform's state-flow rules clear `active` when a task reaches a closed state.
INACTIVE_STATES = {"incident": {"7", "8"}, "sc_req_item": {"3", "4", "7"}}
CHOICES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("incident", "state"): (
        ("1", "New"),
        ("2", "In Progress"),
        ("3", "On Hold"),
        ("6", "Resolved"),
        ("7", "Closed"),
        ("8", "Canceled"),
    ),
    ("incident", "hold_reason"): (
        ("1", "Awaiting Caller"),
        ("3", "Awaiting Problem"),
        ("4", "Awaiting Vendor"),
        ("5", "Awaiting Change"),
    ),
    ("sc_req_item", "state"): (
        ("-5", "Pending"),
        ("1", "Open"),
        ("2", "Work in Progress"),
        ("3", "Closed Complete"),
        ("4", "Closed Incomplete"),
        ("7", "Closed Skipped"),
    ),
}
RATE_LIMIT_RULE_ID = "5b7e3c1f9a2d4e6f8b0c1d2e3f4a5b6c"
DEFAULT_LIMIT = 10000
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT = 10.0
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")

Record = dict[str, str]


@dataclass
class ServiceNowSimConfig:
    username: str = "deskgate.integration"
    password: str = "sandbox-servicenow-password"
    # A second account: an agent (or a flow) writing on records, as anyone but Deskgate.
    agent_username: str = "it.agent"
    agent_password: str = "sandbox-servicenow-agent-password"
    # sys_user records made through the API appear this many days old, as an employee's
    # profile is: only later changes are new. 0 = made now.
    user_age_days: float = 0.0
    # Start with the administrator's record edited once (audit history, as any live instance
    # has); off: an instance whose sys_user has never been audited.
    seed_history: bool = True
    # The administrator: the only account that may write metadata (``deskgate setup --apply``).
    admin_username: str = "admin"
    admin_password: str = "sandbox-servicenow-admin-password"
    # The roles each account holds from the start (sys_user_has_role), as an instance's admin
    # gives them before Deskgate is set up: `deskgate setup --apply` creates the `deskgate`
    # role, grants it to the integration user and makes the field ACLs.
    user_roles: tuple[tuple[str, str], ...] = (
        ("admin", "admin"), ("deskgate.integration", "itil"), ("it.agent", "itil"),
    )  # fmt: skip
    # Field write ACLs the instance starts with ("<table>.<field>", role), for tests of the
    # platform's enforcement alone. Empty (a fresh instance): setup makes Deskgate's.
    field_acls: tuple[tuple[str, str], ...] = ()
    # sys_user fields excluded from auditing (the dictionary attribute no_audit=true): their
    # changes leave no sys_audit row, so a phone set a minute ago looks as old as the user.
    unaudited_user_fields: tuple[str, ...] = ()
    # How long after its business rule ran a script's RESTMessageV2.executeAsync() request is
    # sent: the platform queues it (the ECC queue) and a worker sends it later, so a push is
    # signed when the rule ran and arrives this much later (0: at once, as on an idle instance).
    execute_async_delay_seconds: float = 0.0
    oauth_client_id: str = "sandbox-sn-client"
    oauth_client_secret: str = "sandbox-sn-client-secret"
    client_credentials_enabled: bool = True
    access_token_ttl_seconds: int = 1800
    # The desk's push secret in the sandbox's Deskgate config; ``provision`` sets the business
    # rule's secret property to it (the simulator itself signs nothing).
    webhook_secret: str = "sandbox-servicenow-signing-secret"
    tables: tuple[str, ...] = ("incident", "sc_req_item")


def set_up(config: ServiceNowSimConfig) -> ServiceNowSimConfig:
    """``config`` as an instance on which ``deskgate setup`` already ran, for tests of the
    platform's enforcement alone: the integration user holds ``deskgate`` and the status field
    has its write ACL."""
    return replace(
        config,
        user_roles=(*config.user_roles, (config.username, "deskgate")),
        field_acls=(*config.field_acls, ("incident.u_idv_status", "deskgate")),
    )


class ApiError(Exception):
    """Rendered as ServiceNow's failure envelope."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


def error_response(status: int, message: str, detail: str | None = None) -> Response:
    resp = jsonify({"error": {"message": message, "detail": detail}, "status": "failure"})
    resp.status_code = status
    return resp


def _to_str(value: Any) -> str:
    """The platform stores every value as a string; mirror its coercions."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "value" in value:
        return _to_str(value["value"])  # a link object echoed back
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@dataclass
class _Token:
    user: str
    client_id: str
    expires_at: float


@dataclass
class Attempt:
    at: float
    status: int | None
    error: str | None
    headers: dict[str, str]


@dataclass
class Delivery:
    id: int
    url: str
    table: str
    sys_id: str
    number: str
    body: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)  # as the script set them
    status: str = "pending"  # pending | delivered | failed
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class RenderOptions:
    fields: list[str] | None
    display: str  # "false" | "true" | "all"
    exclude_links: bool
    base_url: str


class ServiceNowState:
    """The whole instance. Callers hold ``lock`` around every method not marked thread-safe."""

    def __init__(self, config: ServiceNowSimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.webhooks = WebhookClient(WEBHOOK_TIMEOUT)  # shared by the delivery threads
        self.clear()

    def clear(self) -> None:
        names = (*self.config.tables, "sys_user", *INSERT_ONLY, *METADATA)
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in names}
        self.known: dict[str, set[str]] = {name: set(self._schema(name)) for name in names}
        self.counters: dict[str, int] = {}
        self.tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self.deliveries: list[Delivery] = []
        self.script_log: list[dict[str, str]] = []  # gs.info/gs.error and script errors
        self.update_set_files: dict[str, bytes] = {}  # loaded update sets, by their sys_id
        self.denied_reads: set[tuple[str, str]] = set()  # (user, table) the ACLs refuse to read
        # (table, sys_id) -> an agent's edit made just before Deskgate's next write of that
        # record, after Deskgate's re-read: the race the Table API cannot refuse.
        self.edit_before_write: dict[tuple[str, str], dict[str, Any]] = {}
        self.frozen_now: str | None = None
        for (table, element), choices in CHOICES.items():
            for seq, (value, label) in enumerate(choices, start=1):
                self.insert(
                    "sys_choice",
                    {
                        "name": table,
                        "element": element,
                        "value": value,
                        "label": label,
                        "sequence": str(seq),
                        "language": "en",
                        "inactive": "false",
                    },
                    "system",
                )
        self._seed_accounts()
        for column in BASE_SCHEMA["sys_user"]:  # sys_user's columns, as its dictionary lists them
            no_audit = column in self.config.unaudited_user_fields
            self.insert(
                "sys_dictionary",
                {
                    "name": "sys_user",
                    "element": column,
                    "internal_type": "string",
                    "active": "true",
                    "attributes": "no_audit=true" if no_audit else "",
                },
                "system",
            )
        if not self.config.seed_history:
            return
        # An instance's history: the administrator's record, edited once, so sys_user has audit
        # rows as on any live instance (Deskgate reads a contact's age from them).
        admin = next(u for u in self.tables["sys_user"].values() if u["user_name"] == "admin")
        self.update("sys_user", admin["sys_id"], {"title": "System Administrator"}, "system")

    def _seed_accounts(self) -> None:
        """The accounts, their roles and the field ACLs the instance starts with."""
        cfg, ids = self.config, dict[str, str]()
        for user in dict.fromkeys([cfg.admin_username, cfg.username, cfg.agent_username]):
            ids[user] = self.insert("sys_user", {"user_name": user, "last_name": user},
                                    "system")[0]["sys_id"]  # fmt: skip
        roles = {
            name: self.insert("sys_user_role", {"name": name}, "system")[0]["sys_id"]
            for name in dict.fromkeys(r for _, r in (*cfg.user_roles, *cfg.field_acls))
        }
        for user, role in cfg.user_roles:
            self.insert("sys_user_has_role", {"user": ids[user], "role": roles[role],
                                              "state": "active"}, "system")  # fmt: skip
        for name, role in cfg.field_acls:
            acl, _ = self.insert(
                "sys_security_acl",
                {"name": name, "operation": "write", "type": "record", "active": "true",
                 "admin_overrides": "true",
                 "description": "Only Deskgate writes its status field (deskgate setup)"},
                "system",
            )  # fmt: skip
            self.insert("sys_security_acl_role",
                        {"sys_security_acl": acl["sys_id"], "sys_user_role": roles[role]},
                        "system")  # fmt: skip

    # -- access control lists ----------------------------------------------------------------

    def roles_of(self, user_name: str) -> set[str]:
        """The names of the roles a user holds (sys_user_has_role)."""
        users = {
            sid for sid, u in self.tables["sys_user"].items() if u.get("user_name") == user_name
        }
        held = {r.get("role") for r in self.tables["sys_user_has_role"].values()
                if r.get("user") in users and r.get("state", "active") == "active"}  # fmt: skip
        return {r.get("name", "") for sid, r in self.tables["sys_user_role"].items() if sid in held}

    def acl_allows(self, user_name: str, name: str, operation: str) -> bool:
        """The platform's ACL check for one object (``<table>`` or ``<table>.<field>``): with no
        active ``record`` ACL for it and the operation, allowed; otherwise the user must pass at
        least one of them. An ACL is passed by holding any of its roles (none named: anyone), or
        by an admin where it has admin_overrides. A condition or script is not evaluated here:
        such an ACL is passed only through admin_overrides (strict)."""
        acls = [a for a in self.tables["sys_security_acl"].values()
                if a.get("name") == name and a.get("operation") == operation
                and a.get("active") == "true" and a.get("type", "record") == "record"]  # fmt: skip
        if not acls:
            return True
        roles = self.roles_of(user_name)
        for acl in acls:
            if "admin" in roles and acl.get("admin_overrides") == "true":
                return True
            if acl.get("condition", "").strip() or acl.get("script", "").strip():
                continue
            needed = {self.tables["sys_user_role"].get(r.get("sys_user_role", ""), {}).get("name")
                      for r in self.tables["sys_security_acl_role"].values()
                      if r.get("sys_security_acl") == acl["sys_id"]}  # fmt: skip
            if not needed or needed & roles:
                return True
        return False

    def writable(self, table: str, values: Mapping[str, Any], user_name: str, operation: str
                 ) -> dict[str, Any]:  # fmt: skip
        """A Table API write as the ACLs let it through: a table ACL the user fails refuses it
        (403, the platform's body); a field ACL they fail drops that field, and the rest is
        written (200): the Table API does not say which field it ignored."""
        if not self.acl_allows(user_name, table, operation):
            action = "Insert" if operation == "create" else "Update"
            why = f"ACL Exception {action} Failed due to security constraints"
            raise ApiError(403, "Operation Failed", why)
        return {k: v for k, v in values.items()
                if self.acl_allows(user_name, f"{table}.{k}", operation)}  # fmt: skip

    def _schema(self, table: str) -> tuple[str, ...]:
        system = JOURNAL_SYSTEM_FIELDS if table in INSERT_ONLY else SYSTEM_FIELDS
        return (*system, *BASE_SCHEMA.get(table, _TASK_FIELDS))

    def now(self) -> str:
        return self.frozen_now or datetime.now(UTC).strftime(TIME_FORMAT)

    # -- fields and references ------------------------------------------------------------

    def valid_path(self, table: str, path: str) -> bool:
        """A field, or a dot-walk through reference fields, that this table knows."""
        parts = path.split(".")
        for i, part in enumerate(parts):
            if table not in self.known or part not in self.known[table]:
                return False
            if i < len(parts) - 1:
                target = REFERENCES.get(table, {}).get(part)
                if target is None:
                    return False
                table = target
        return True

    def walk(
        self, table: str, record: Mapping[str, str] | None, path: str
    ) -> tuple[str, Mapping[str, str] | None, str]:
        """Follow ``a.b.c`` to (table, record or None, leaf field)."""
        *hops, leaf = path.split(".")
        for hop in hops:
            target = REFERENCES.get(table, {}).get(hop, "")
            ref_id = record.get(hop, "") if record is not None else ""
            record = self.tables.get(target, {}).get(ref_id)
            table = target
        return table, record, leaf

    def resolver(self, table: str) -> snq.Resolver:
        def resolve(record: Mapping[str, str], path: str) -> str:
            _, target, leaf = self.walk(table, record, path)
            return target.get(leaf, "") if target is not None else ""

        return resolve

    # -- reads ----------------------------------------------------------------------------

    def select(self, table: str, query: str) -> list[Record]:
        parsed = snq.parse(query).prune(lambda f: self.valid_path(table, f))
        resolve = self.resolver(table)
        rows = [r for r in self.tables[table].values() if parsed.matches(r, resolve)]
        return [dict(r) for r in snq.sort_records(rows, parsed.orderings, resolve)]

    def journal(self, table: str, sys_id: str, element: str | None = None) -> list[Record]:
        return [
            dict(j)
            for j in self.tables[JOURNAL_TABLE].values()
            if j["name"] == table
            and j["element_id"] == sys_id
            and (element is None or j["element"] == element)
        ]

    # -- writes ---------------------------------------------------------------------------

    def insert(
        self, table: str, values: Mapping[str, Any], user: str
    ) -> tuple[Record, list[Delivery]]:
        sys_id = _to_str(values.get("sys_id", ""))
        if not _SYS_ID.match(sys_id):
            sys_id = uuid.uuid4().hex
        if sys_id in self.tables[table]:
            raise ApiError(403, "Operation Failed", f"Error during insert of {table} ({sys_id})")
        now = self.now()
        if table == "sys_user" and self.config.user_age_days:
            made = datetime.strptime(now, TIME_FORMAT) - timedelta(days=self.config.user_age_days)
            now = made.strftime(TIME_FORMAT)
        record: Record = {
            "sys_id": sys_id,
            "sys_created_on": now,
            "sys_created_by": user,
        }
        if table not in INSERT_ONLY:
            record.update(sys_updated_on=now, sys_updated_by=user, sys_mod_count="0")
        record.update(DEFAULTS.get(table, {}))
        # A boolean column added through the dictionary is false until set (its default).
        record.update(dict.fromkeys(self.added_booleans(table), "false"))
        if table in self.config.tables:
            record.setdefault("active", "true")
            record["opened_at"] = now
        if table in NUMBER_PREFIX:
            self.counters[table] = self.counters.get(table, 10000) + 1
            record["number"] = f"{NUMBER_PREFIX[table]}{self.counters[table]:07d}"
        changes, notes = self._coerce(table, values, record)
        record.update(changes)
        self._derive(table, record, values)
        record.update(self._rules(("before",), "insert", table, record, None, user)[0])
        self.tables[table][sys_id] = record
        for element, text in notes:
            self._add_journal(table, sys_id, element, text, user)
        self._add_column(table, record)
        _, sent = self._rules(("after", "async"), "insert", table, record, None, user)
        return dict(record), sent

    def update(
        self, table: str, sys_id: str, values: Mapping[str, Any], user: str
    ) -> tuple[Record, list[Delivery]]:
        record = self.tables[table].get(sys_id)
        if record is None:
            raise ApiError(404, *NOT_FOUND)
        changes, notes = self._coerce(table, values, record)
        candidate = {**record, **changes}
        self._derive(table, candidate, values)
        if candidate != record or notes:  # the platform skips no-op updates, rules included
            ruled, _ = self._rules(("before",), "update", table, candidate, record, user)
            candidate.update(ruled)
        changed = {k: v for k, v in candidate.items() if record.get(k) != v}
        if not changed and not notes:
            return dict(record), []  # the platform skips no-op updates entirely
        before_all = dict(record)
        record.update(changed)
        record.update(
            sys_updated_on=self.now(),
            sys_updated_by=user,
            sys_mod_count=str(int(record.get("sys_mod_count", "0")) + 1),
        )
        for element, text in notes:
            self._add_journal(table, sys_id, element, text, user)
        if table not in UNAUDITED:
            for name, value in changed.items():
                if self.no_audit(table, name):
                    continue
                self.insert(
                    AUDIT_TABLE,
                    {"tablename": table, "documentkey": sys_id, "fieldname": name,
                     "oldvalue": before_all.get(name, ""), "newvalue": value, "user": user},
                    user,
                )  # fmt: skip
        self._add_column(table, record)
        _, sent = self._rules(("after", "async"), "update", table, record, before_all, user)
        return dict(record), sent

    def _coerce(
        self, table: str, values: Mapping[str, Any], record: Mapping[str, str]
    ) -> tuple[Record, list[tuple[str, str]]]:
        """Split a write into field changes and journal entries; system fields are read-only."""
        changes: Record = {}
        notes: list[tuple[str, str]] = []
        booleans = self.booleans(table)
        for name, raw in values.items():
            if name in SYSTEM_FIELDS or not isinstance(name, str) or not name:
                continue
            value = _to_str(raw)
            if name in booleans:  # the platform takes 1/0 for a boolean and stores true/false
                value = {"1": "true", "0": "false"}.get(value, value)
            if name in JOURNAL_FIELDS and table != JOURNAL_TABLE:
                if value.strip():
                    notes.append((name, value))
                continue
            # Unknown columns are accepted (and learned) so tests can add custom u_ fields.
            self.known[table].add(name)
            if record.get(name, "") != value:
                changes[name] = value
        return changes, notes

    def _derive(self, table: str, record: Record, values: Mapping[str, Any]) -> None:
        """Platform business rules that change other fields as a side effect."""
        closed = INACTIVE_STATES.get(table)
        if closed is not None and "state" in values and "active" not in values:
            record["active"] = "false" if record.get("state") in closed else "true"
        if (
            table == "sys_user"
            and "name" not in values
            and {"first_name", "last_name"} & set(values)
        ):
            full = f"{record.get('first_name', '')} {record.get('last_name', '')}"
            record["name"] = full.strip()

    def _add_journal(self, table: str, sys_id: str, element: str, text: str, user: str) -> None:
        self.insert(
            JOURNAL_TABLE,
            {"element": element, "element_id": sys_id, "name": table, "value": text},
            user,
        )

    def delete(self, table: str, sys_id: str) -> None:
        if self.tables[table].pop(sys_id, None) is None:
            raise ApiError(404, *NOT_FOUND)

    # -- metadata and scripts ---------------------------------------------------------------

    def _add_column(self, table: str, record: Mapping[str, str]) -> None:
        """A field's dictionary entry adds its column to the table (the platform alters it)."""
        if table == "sys_dictionary" and record.get("name") in self.tables:
            self.known[record["name"]].add(record.get("element", ""))

    def no_audit(self, table: str, element: str) -> bool:
        """The field's dictionary attributes exclude it from auditing (``no_audit=true``)."""
        return any(
            d.get("name") == table and d.get("element") == element
            and no_audit(d.get("attributes", ""))
            for d in self.tables["sys_dictionary"].values()
        )  # fmt: skip

    def property(self, name: str) -> str | None:
        """gs.getProperty: a property's value (a password2 one decrypted), None if absent."""
        for prop in self.tables["sys_properties"].values():
            if prop.get("name") == name:
                return prop.get("value", "")
        return None

    def added_booleans(self, table: str) -> list[str]:
        return [
            d.get("element", "") for d in self.tables["sys_dictionary"].values()
            if d.get("name") == table and d.get("internal_type") == "boolean"
        ]  # fmt: skip

    def booleans(self, table: str) -> list[str]:
        return [*BOOLEAN_FIELDS, *self.added_booleans(table)]

    def _host(self, user: str) -> scripts.Host:
        def log(level: str, message: str) -> None:
            self.script_log.append({"level": level, "message": message, "user": user})

        return scripts.Host(user=user, property=self.property, log=log, http=self.webhooks.get())

    def _rules(
        self,
        whens: tuple[str, ...],
        action: str,
        table: str,
        record: Record,
        previous: Record | None,
        user: str,
    ) -> tuple[Record, list[Delivery]]:
        """Run the table's active business rules for ``action`` at ``whens`` in ``order``: the
        record as the rules left it (before rules may change it), and the REST requests they
        sent asynchronously, as deliveries to start once the transaction is over. ``async``
        rules run here too, with no ``previous``, as the platform hands them none."""
        rules = sorted(
            (r for r in self.tables["sys_script"].values()
             if r.get("collection") == table and r.get("active") == "true"
             and r.get("when") in whens and r.get(f"action_{action}") == "true"),
            key=lambda r: (int(r.get("order") or 100), r.get("name", "")),
        )  # fmt: skip
        values, sent = dict(record), []
        for rule in rules:
            filtered = rule.get("filter_condition", "")
            if filtered and not snq.parse(filtered).matches(values, self.resolver(table)):
                continue
            host = self._host(user)
            outcome = scripts.run(
                rule.get("script", ""), host=host, table=table, record=self._full(table, values),
                previous=None if rule.get("when") == "async" or previous is None
                else self._full(table, previous),
                booleans=self.booleans(table), condition=rule.get("condition", ""),
            )  # fmt: skip
            if outcome.ran and rule.get("when") == "before":
                values.update({k: v for k, v in outcome.values.items() if values.get(k, "") != v})
            sent += [self._delivery(out) for out in host.sent_later]
        return values, sent

    def _full(self, table: str, record: Mapping[str, str]) -> Record:
        """The record as a script sees it: every column of the table, empty when unset (a
        boolean column unset is false, its default on the platform)."""
        full = {**dict.fromkeys(self.known[table], ""), **record}
        for name in self.booleans(table):
            full[name] = full.get(name) or "false"
        return full

    def _delivery(self, out: scripts.Outbound) -> Delivery:
        named = scripts.body_fields(out.body)
        delivery = Delivery(
            id=len(self.deliveries) + 1,
            url=out.url,
            table=named.get("table", ""),
            sys_id=named.get("sys_id", ""),
            number=named.get("number", ""),
            body=out.body,
            method=out.method,
            headers=out.headers,
        )
        self.deliveries.append(delivery)
        return delivery

    def click(
        self, table: str, sys_id: str, action_name: str, user: str
    ) -> tuple[Record, list[Delivery]]:
        """An agent clicks a UI action on the record's form: its condition decides whether the
        button shows; its script runs on the record, and ``current.update()`` saves it as that
        agent (the table's business rules run on that save)."""
        record = self.tables.get(table, {}).get(sys_id)
        if record is None:
            raise ApiError(404, *NOT_FOUND)
        found = [
            a for a in self.tables["sys_ui_action"].values()
            if a.get("table") == table and a.get("action_name") == action_name
            and a.get("active") == "true"
        ]  # fmt: skip
        if not found:
            raise ApiError(404, "No such UI action", f"{table} has no active {action_name!r}")
        # A UI action's ``roles`` decide who sees it (ServiceNow's UI action form: "Roles
        # required to see the UI action"; none named: anyone; admin holds every role).
        needed = {r.strip() for r in found[0].get("roles", "").split(",") if r.strip()}
        held = self.roles_of(user)
        if needed and not (needed & held or "admin" in held):
            raise ApiError(403, "UI action not available", f"{user} holds none of its roles")
        record = self._full(table, record)
        shown = scripts.run(
            "", host=self._host(user), table=table, record=record, previous=record,
            booleans=self.booleans(table), condition=found[0].get("condition", ""),
        )  # fmt: skip
        if not shown.ran:
            raise ApiError(409, "UI action not available", "its condition is false on this record")
        outcome = scripts.run(
            found[0].get("script", ""), host=self._host(user), table=table, record=record,
            previous=record, booleans=self.booleans(table),
        )  # fmt: skip
        if not (outcome.ran and outcome.saved):
            return dict(record), []
        edits = {k: v for k, v in outcome.values.items() if record.get(k) != v}
        return self.update(table, sys_id, edits, user)

    # -- update sets --------------------------------------------------------------------------

    def load_update_set(self, data: bytes, user: str) -> Record:
        """Import Update Set from XML: the set and its updates land in Retrieved Update Sets,
        "loaded"; nothing is applied until it is committed."""
        try:
            header, _ = update_set.parse(data)
        except ValueError as exc:
            raise ApiError(400, "Invalid update set", str(exc)) from None
        set_id = uuid.uuid4().hex
        remote, _ = self.insert(
            "sys_remote_update_set",
            {"sys_id": set_id, "name": header.get("name", ""), "state": "loaded",
             "description": header.get("description", ""), "application": "global"},
            user,
        )  # fmt: skip
        self.update_set_files[set_id] = data
        return remote

    def preview_update_set(self, set_id: str) -> list[str]:
        """Preview: the problems committing would meet (``servicenow_updates``)."""
        problems = updates.problems(self, self._updates(set_id))
        self.tables["sys_remote_update_set"][set_id]["state"] = "previewed"
        return problems

    def commit_update_set(self, set_id: str, user: str) -> int:
        """Commit: each update through its record type's handler, in the file's order."""
        remote = self.tables["sys_remote_update_set"].get(set_id)
        if remote is None or remote.get("state") != "previewed":
            raise ApiError(400, "Preview the update set first", "only a previewed set commits")
        try:
            count = updates.commit(self, self._updates(set_id), user)
        except ValueError as exc:
            raise ApiError(400, "The preview found problems", str(exc)) from None
        remote["state"] = "committed"
        return count

    def _updates(self, set_id: str) -> list[update_set.Update]:
        return update_set.parse(self._update_set_file(set_id))[1]

    def _update_set_file(self, set_id: str) -> bytes:
        data = self.update_set_files.get(set_id)
        if data is None:
            raise ApiError(404, *NOT_FOUND)
        return data

    def deliver(self, delivery: Delivery) -> None:
        """Thread-safe; runs in a background thread like ``RESTMessageV2.executeAsync()``."""
        body = delivery.body.encode()
        headers = {"User-Agent": "ServiceNow/1.0", **delivery.headers}
        time.sleep(self.config.execute_async_delay_seconds)
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            status: int | None = None
            error: str | None = None
            try:
                client = self.webhooks.get()
                status = client.request(
                    delivery.method, delivery.url, content=body, headers=headers
                ).status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            retry = status is None or status >= 500
            with self.lock:
                delivery.attempts.append(Attempt(time.time(), status, error, headers))
                if not retry:
                    delivery.status = (
                        "delivered" if status is not None and status < 300 else "failed"
                    )
                elif attempt == WEBHOOK_ATTEMPTS:
                    delivery.status = "failed"
            if not retry:
                return
            if attempt < WEBHOOK_ATTEMPTS:
                time.sleep(0.2 * attempt)

    # -- rendering ------------------------------------------------------------------------

    def render(self, table: str, record: Mapping[str, str], opts: RenderOptions) -> dict[str, Any]:
        if opts.fields is None:
            names = sorted(self.known[table])
        else:
            names = [f for f in opts.fields if self.valid_path(table, f)]
        out: dict[str, Any] = {}
        for name in names:
            target_table, target, leaf = self.walk(table, record, name)
            out[name] = self._render_value(target_table, target, leaf, opts)
        if table == "sys_properties" and record.get("type") == "password2" and out.get("value"):
            # Stored encrypted: the Table API shows the ciphertext, never the value.
            out["value"] = hashlib.sha256(
                b"sandbox-encryption" + record["value"].encode()
            ).hexdigest()
        return out

    def _render_value(
        self, table: str, record: Mapping[str, str] | None, name: str, opts: RenderOptions
    ) -> Any:
        raw = record.get(name, "") if record is not None else ""
        ref_table = REFERENCES.get(table, {}).get(name)
        if ref_table is not None:
            if raw == "":
                return {"display_value": "", "value": ""} if opts.display == "all" else ""
            link = f"{opts.base_url}/api/now/table/{ref_table}/{raw}"
            shown = self._display_of(ref_table, raw)
            value: dict[str, str] = {}
            if opts.display == "false":
                if opts.exclude_links:
                    return raw
                value = {"link": link, "value": raw}
            elif opts.display == "true":
                if opts.exclude_links:
                    return shown
                value = {"display_value": shown, "link": link}
            else:
                value = {"display_value": shown, "value": raw}
                if not opts.exclude_links:
                    value["link"] = link
            return value
        if opts.display == "false":
            return raw
        shown = self._choice_label(table, name, raw)
        if name in JOURNAL_FIELDS and record is not None and table != JOURNAL_TABLE:
            shown = self._journal_text(table, record.get("sys_id", ""), name)
        if opts.display == "true":
            return shown
        return {"display_value": shown, "value": raw}

    def _display_of(self, table: str, sys_id: str) -> str:
        record = self.tables.get(table, {}).get(sys_id)
        if record is None:
            return ""
        return record.get(DISPLAY_FIELD.get(table, "sys_id"), "")

    def _choice_label(self, table: str, element: str, value: str) -> str:
        for choice in self.tables["sys_choice"].values():
            if (
                choice.get("name") == table
                and choice.get("element") == element
                and choice.get("value") == value
            ):
                return choice.get("label", value)
        return value

    def _journal_text(self, table: str, sys_id: str, element: str) -> str:
        """What the platform shows for a journal field: newest entry first, with a header line."""
        entries = reversed(self.journal(table, sys_id, element))  # insertion order = time order
        label = JOURNAL_FIELDS[element]
        return "".join(
            f"{j['sys_created_on']} - {j['sys_created_by']} ({label})\n{j['value']}\n\n"
            for j in entries
        )

    # -- auth -----------------------------------------------------------------------------

    def issue(self, user: str, client_id: str, with_refresh: bool) -> dict[str, Any]:
        ttl = self.config.access_token_ttl_seconds
        access = secrets.token_urlsafe(48)
        self.tokens[access] = _Token(user, client_id, time.time() + ttl)
        body: dict[str, Any] = {"access_token": access}
        if with_refresh:
            refresh = secrets.token_urlsafe(48)
            # Platform default refresh-token lifespan: 100 days.
            self.refresh_tokens[refresh] = _Token(user, client_id, time.time() + 100 * 86400)
            body["refresh_token"] = refresh
        body.update(scope="useraccount", token_type="Bearer", expires_in=ttl)
        return body


NOT_FOUND = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
UNAUTHENTICATED = ("User Not Authenticated", "Required to provide Auth information")


def _oauth_error(status: int, error: str, description: str) -> Response:
    resp = jsonify({"error_description": description, "error": error})
    resp.status_code = status
    return resp


def create_app(config: ServiceNowSimConfig) -> flask.Flask:
    """Build the simulator; serve it with ``sandbox.common.serve``."""
    app = flask.Flask("servicenow_sim")
    state = ServiceNowState(config)
    controls = Controls("servicenow", lambda status, message: error_response(status, message))
    controls.install(app)
    app.extensions["servicenow_sim"] = state
    on_stop(app, state.webhooks.close)

    def start(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            threading.Thread(
                target=state.deliver, args=(delivery,), name="sn-business-rule", daemon=True
            ).start()

    # -- hooks and errors -----------------------------------------------------------------

    @app.before_request
    def authenticate() -> Response | None:
        if not request.path.startswith(("/api/", "/sys_upload.do", "/sys_remote_update_set/")):
            return None
        auth = request.authorization
        user: str | None = None
        if auth is not None and auth.type == "basic":
            for name, password in (
                (config.username, config.password),
                (config.agent_username, config.agent_password),
                (config.admin_username, config.admin_password),
            ):
                if hmac.compare_digest(str(auth.username), name) & hmac.compare_digest(
                    str(auth.password), password
                ):
                    user = name
        elif auth is not None and auth.type == "bearer" and auth.token:
            with state.lock:
                token = state.tokens.get(auth.token)
            if token is not None and token.expires_at > time.time():
                user = token.user
        if user is None:
            return error_response(401, *UNAUTHENTICATED)
        g.user = user
        return None

    @app.after_request
    def rate_limit_headers(response: Response) -> Response:
        limit = controls.rate_limit
        if limit is not None and not request.path.startswith(CONTROL_PREFIX):
            retry_after = response.headers.get("Retry-After")
            wait = int(retry_after) if retry_after and retry_after.isdigit() else limit[1]
            response.headers["X-RateLimit-Limit"] = str(limit[0])
            response.headers["X-RateLimit-Reset"] = str(int(time.time() + wait))
            response.headers["X-RateLimit-Rule"] = RATE_LIMIT_RULE_ID
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.detail)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return error_response(
                400, f"Requested URI does not represent any resource: {request.path}"
            )
        if status == 405:
            return error_response(405, "Method not Supported", f"{request.method} {request.path}")
        return error_response(status, exc.name, exc.description)

    # -- OAuth ----------------------------------------------------------------------------

    @app.post("/oauth_token.do")
    def oauth_token() -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "Request must be application/x-www-form-urlencoded"
            )
        form = request.form
        grant = form.get("grant_type", "")
        client_ok = hmac.compare_digest(
            form.get("client_id", ""), config.oauth_client_id
        ) and hmac.compare_digest(form.get("client_secret", ""), config.oauth_client_secret)
        denied = _oauth_error(401, "server_error", "access_denied")
        with state.lock:
            if grant == "password":
                user_ok = hmac.compare_digest(
                    form.get("username", ""), config.username
                ) and hmac.compare_digest(form.get("password", ""), config.password)
                if not (client_ok and user_ok):
                    return denied
                return jsonify(state.issue(config.username, config.oauth_client_id, True))
            if grant == "client_credentials":
                if not (client_ok and config.client_credentials_enabled):
                    return denied
                # Runs as the registry's "OAuth Application User": here, the integration user.
                return jsonify(state.issue(config.username, config.oauth_client_id, False))
            if grant == "refresh_token":
                refresh = state.refresh_tokens.get(form.get("refresh_token", ""))
                if not client_ok or refresh is None or refresh.expires_at <= time.time():
                    return denied
                body = state.issue(refresh.user, refresh.client_id, False)
                body["refresh_token"] = form.get("refresh_token", "")
                return jsonify(body)
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant!r}")

    # -- Table API ------------------------------------------------------------------------

    def check_table(table: str, writing: bool = False) -> None:
        if table not in state.tables:
            raise ApiError(400, f"Invalid table {table}")
        with state.lock:
            denied = (g.user, table) in state.denied_reads
        if denied or (writing and table in METADATA and g.user != config.admin_username):
            action = "read" if denied else "write"
            raise ApiError(
                403, "Operation Failed", f"ACL Exception: {action} on {table} needs another role"
            )
        if writing and table in INSERT_ONLY:
            action = {"POST": "Insert", "DELETE": "Delete"}.get(request.method, "Update")
            raise ApiError(
                403,
                "Operation Failed",
                f"ACL Exception {action} Failed due to security constraints",
            )

    def render_options() -> RenderOptions:
        args = request.args
        fields = [f.strip() for f in args.get("sysparm_fields", "").split(",") if f.strip()]
        display = args.get("sysparm_display_value", "false").lower()
        return RenderOptions(
            fields=fields or None,
            display=display if display in ("true", "all") else "false",
            exclude_links=args.get("sysparm_exclude_reference_link", "").lower() == "true",
            base_url=request.host_url.rstrip("/"),
        )

    def body_object() -> dict[str, Any]:
        raw = request.get_data()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(
                400, "Exception while reading request", "The payload is not valid JSON."
            ) from None
        if not isinstance(body, dict):
            raise ApiError(400, "Exception while reading request", "The payload must be an object.")
        return body

    def list_records(table: str) -> Response:
        check_table(table)
        args = request.args
        limit = _int_arg(args.get("sysparm_limit"), DEFAULT_LIMIT, minimum=1)
        offset = _int_arg(args.get("sysparm_offset"), 0, minimum=0)
        opts = render_options()
        with state.lock:
            rows = state.select(table, args.get("sysparm_query", ""))
            page = [state.render(table, r, opts) for r in rows[offset : offset + limit]]
        resp = jsonify({"result": page})
        total = len(rows)
        if args.get("sysparm_no_count", "").lower() != "true":
            resp.headers["X-Total-Count"] = str(total)
        suppress = args.get("sysparm_suppress_pagination_header", "").lower() == "true"
        link = _link_header(total, offset, limit)
        if link and not suppress:
            resp.headers["Link"] = link
        return resp

    def create_record(table: str) -> Response:
        check_table(table, writing=True)
        values = body_object()
        opts = render_options()
        with state.lock:
            values = state.writable(table, values, g.user, "create")
            record, deliveries = state.insert(table, values, g.user)
            result = state.render(table, record, opts)
        start(deliveries)
        resp = jsonify({"result": result})
        resp.status_code = 201
        resp.headers["Location"] = f"{opts.base_url}/api/now/table/{table}/{record['sys_id']}"
        return resp

    def one_record(table: str, sys_id: str) -> Response:
        check_table(table, writing=request.method != "GET")
        opts = render_options()
        if request.method == "DELETE":
            with state.lock:
                state.delete(table, sys_id)
            return Response(status=204)
        values = body_object() if request.method in ("PUT", "PATCH") else None
        deliveries: list[Delivery] = []
        with state.lock:
            if values is None:
                found = state.tables[table].get(sys_id)
                if found is None:
                    raise ApiError(404, *NOT_FOUND)
                record = dict(found)
            else:
                # PUT and PATCH both behave as partial updates on the platform.
                edit = state.edit_before_write.pop((table, sys_id), None)
                if edit is not None and g.user == config.username:
                    state.update(table, sys_id, edit, config.agent_username)
                elif edit is not None:
                    state.edit_before_write[(table, sys_id)] = edit
                values = state.writable(table, values, g.user, "write")
                record, deliveries = state.update(table, sys_id, values, g.user)
            result = state.render(table, record, opts)
        start(deliveries)
        return jsonify({"result": result})

    for prefix, suffix in (("/api/now/table", ""), ("/api/now/v2/table", "_v2")):
        app.add_url_rule(f"{prefix}/<table>", f"list{suffix}", list_records, methods=["GET"])
        app.add_url_rule(f"{prefix}/<table>", f"create{suffix}", create_record, methods=["POST"])
        app.add_url_rule(
            f"{prefix}/<table>/<sys_id>",
            f"record{suffix}",
            one_record,
            methods=["GET", "PUT", "PATCH", "DELETE"],
        )

    # -- sandbox controls -----------------------------------------------------------------

    @app.post(f"{CONTROL_PREFIX}expire_tokens")
    def expire_tokens() -> Response:
        body = request.get_json(silent=True) or {}
        with state.lock:
            for token in state.tokens.values():
                token.expires_at = 0.0
            if body.get("refresh"):
                for token in state.refresh_tokens.values():
                    token.expires_at = 0.0
        return jsonify({"ok": True})

    @app.post(f"{CONTROL_PREFIX}reset")
    def reset() -> Response:
        with state.lock:
            state.clear()
        return jsonify({"ok": True})

    @app.get(f"{CONTROL_PREFIX}records/<table>/<sys_id>")
    def raw_record(table: str, sys_id: str) -> Response:
        with state.lock:
            record = state.tables.get(table, {}).get(sys_id)
            if record is None:
                return error_response(404, *NOT_FOUND)
            return jsonify({"record": dict(record), "journal": state.journal(table, sys_id)})

    @app.get(f"{CONTROL_PREFIX}webhook_deliveries")
    def list_deliveries() -> Response:
        with state.lock:
            return jsonify({"deliveries": [asdict(d) for d in state.deliveries]})

    @app.delete(f"{CONTROL_PREFIX}webhook_deliveries")
    def clear_deliveries() -> Response:
        with state.lock:
            state.deliveries.clear()
        return jsonify({"ok": True})

    @app.get(f"{CONTROL_PREFIX}script_log")
    def script_log() -> Response:
        with state.lock:
            return jsonify({"log": list(state.script_log)})

    @app.post(f"{CONTROL_PREFIX}ui_action")
    def click_ui_action() -> Response:
        """An agent clicks a UI action: ``{"table", "sys_id", "action_name", "user"}`` (the
        user defaults to the agent account)."""
        body = request.get_json(force=True) or {}
        user = str(body.get("user") or config.agent_username)
        with state.lock:
            record, deliveries = state.click(
                str(body.get("table", "")), str(body.get("sys_id", "")),
                str(body.get("action_name", "")), user,
            )  # fmt: skip
        start(deliveries)
        return jsonify({"record": record})

    @app.put(f"{CONTROL_PREFIX}edit_before_write/<table>/<sys_id>")
    def edit_before_write(table: str, sys_id: str) -> Response:
        """An agent's edit (the body: field values) that lands on the record just before
        Deskgate's next write of it, after Deskgate's re-read (a change of caller, say)."""
        edit = request.get_json(force=True) or {}
        with state.lock:
            state.edit_before_write[(table, sys_id)] = dict(edit)
        return jsonify({"armed": edit})

    @app.put(f"{CONTROL_PREFIX}acl")
    def acl() -> Response:
        """Take read access on a table from a user, or give it back: ``{"user", "table",
        "read": false|true}`` (an instance whose ACLs do not let Deskgate read callers)."""
        body = request.get_json(force=True) or {}
        entry = (str(body.get("user", "")), str(body.get("table", "")))
        with state.lock:
            if body.get("read", True):
                state.denied_reads.discard(entry)
            else:
                state.denied_reads.add(entry)
        return jsonify({"denied": sorted(state.denied_reads)})

    # -- update sets, as an admin imports them in the UI --------------------------------------

    def admin_only() -> None:
        if g.user != config.admin_username:
            raise ApiError(403, "Operation Failed", "only an admin imports update sets")

    @app.post("/sys_upload.do")
    def upload_update_set() -> Response:
        admin_only()
        upload = request.files.get("attachFile")
        if upload is None:
            raise ApiError(400, "No file", "send the update set XML as the field attachFile")
        with state.lock:
            remote = state.load_update_set(upload.read(), g.user)
        resp = jsonify({"result": remote})
        resp.status_code = 201
        return resp

    @app.post("/sys_remote_update_set/<set_id>/preview")
    def preview_update_set(set_id: str) -> Response:
        admin_only()
        with state.lock:
            problems = state.preview_update_set(set_id)
        return jsonify({"result": {"state": "previewed", "problems": problems}})

    @app.post("/sys_remote_update_set/<set_id>/commit")
    def commit_update_set(set_id: str) -> Response:
        admin_only()
        with state.lock:
            count = state.commit_update_set(set_id, g.user)
        return jsonify({"result": {"state": "committed", "records": count}})

    @app.put(f"{CONTROL_PREFIX}clock")
    def clock() -> Response:
        """Freeze ``sys_*_on`` stamps (``{"now": "yyyy-MM-dd HH:mm:ss"}``) or unfreeze (null)."""
        now = (request.get_json(force=True) or {}).get("now")
        if now is not None:
            try:
                datetime.strptime(now, TIME_FORMAT)
            except (TypeError, ValueError):
                return error_response(400, "Invalid time", "Use yyyy-MM-dd HH:mm:ss")
        with state.lock:
            state.frozen_now = now
        return jsonify({"now": now})

    return app


def _int_arg(raw: str | None, default: int, minimum: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value >= minimum else default


def _link_header(total: int, offset: int, limit: int) -> str | None:
    """ServiceNow's ``Link``: first/prev/next/last, omitted entirely when one page holds it all."""
    if offset == 0 and total <= limit:
        return None
    base = request.base_url
    kept = [
        part
        for part in request.query_string.decode("latin-1").split("&")
        if part and not part.startswith(("sysparm_offset=", "sysparm_limit="))
    ]

    def url(at: int) -> str:
        query = "&".join([*kept, f"sysparm_offset={at}", f"sysparm_limit={limit}"])
        return f"<{base}?{query}>"

    links = [f'{url(0)};rel="first"']
    if offset > 0:
        links.append(f'{url(max(0, offset - limit))};rel="prev"')
    if offset + limit < total:
        links.append(f'{url(offset + limit)};rel="next"')
    links.append(f'{url(max(0, (total - 1) // limit * limit))};rel="last"')
    return ",".join(links)


# -- the sandbox's wiring (sandbox/registry.py) ----------------------------------------------


def _app_config(wiring: Wiring) -> ServiceNowSimConfig:
    return ServiceNowSimConfig(user_age_days=wiring.options.user_age_days)


def _config_text(wiring: Wiring) -> str:
    o = wiring.options
    values = "\n".join(f'{value} = "{reason}"' for value, reason in TRIGGERS.items())
    return f"""[desks.{DESK}]
kind = "servicenow"
base_url = "{wiring.url}"
username = "{ServiceNowSimConfig.username}"
table = "incident"
flag_field = "{FLAG_FIELD}"
consumed_value = ""
channel = "EMAIL"
link_validity_minutes = {o.link_validity_minutes}
poll_interval_seconds = {o.poll_interval_seconds}

[desks.{DESK}.triggers]
{values}
"""


def desk_config(wiring: Wiring, config: ServiceNowSimConfig) -> ServiceNowDeskConfig:
    """The sandbox desk's config as Deskgate loads it (the block above, with its secrets)."""
    return desk_config_from(tomllib.loads(_config_text(wiring))["desks"][DESK], config)


def desk_config_from(block: Mapping[str, Any], config: ServiceNowSimConfig) -> ServiceNowDeskConfig:
    """A desk's block of Deskgate's config, with the simulator's secrets, as Deskgate loads it."""
    return ServiceNowDeskConfig.model_validate(
        {**block, "password": config.password, "webhook_secret": config.webhook_secret}
    )


def provision(wiring: Wiring, config: ServiceNowSimConfig) -> list[Change]:
    """The desk's ``deskgate setup --apply`` as the simulator's admin, with the desk's config as
    the stack writes it: fields, choices, properties, business rule and UI action, so every
    push in the sandbox comes from the shipped business rule. For tests of the simulator alone:
    the stack provisions through the command (``Stack.provision``)."""
    return setup(
        SetupRequest(
            desk=DESK,
            config=desk_config(wiring, config),
            public_url=wiring.webhooks.removesuffix("/webhooks"),
            admin=AdminCredential(config.admin_username, SecretStr(config.admin_password)),
        )
    )


def import_update_set(url: str, xml: bytes, desk: Mapping[str, Any]) -> None:
    """What an admin does with the file ``deskgate setup <desk> --update-set`` wrote: import it
    (Retrieved Update Sets > Import Update Set from XML, then Preview and Commit), then the two
    steps setup prints for after the first commit, through the Table API: create the secret
    property (type password2) with the desk's webhook_secret, and grant the ``deskgate`` role
    to the integration user. ``desk`` is the desk's block of Deskgate's config."""
    cfg = ServiceNowSimConfig()
    table = desk_config_from(desk, cfg).table
    admin = (cfg.admin_username, cfg.admin_password)
    with httpx.Client(base_url=url, auth=admin, timeout=10) as client:
        uploaded = client.post("/sys_upload.do", files={"attachFile": ("deskgate.xml", xml)})
        uploaded.raise_for_status()
        set_id = uploaded.json()["result"]["sys_id"]
        preview = client.post(f"/sys_remote_update_set/{set_id}/preview")
        preview.raise_for_status()
        if problems := preview.json()["result"]["problems"]:
            raise RuntimeError(f"the update set's preview found problems: {problems}")
        client.post(f"/sys_remote_update_set/{set_id}/commit").raise_for_status()

        def one(table: str, query: str) -> str:
            found = client.get(f"/api/now/table/{table}", params={"sysparm_query": query})
            [row] = found.raise_for_status().json()["result"]
            return str(row["sys_id"])

        client.post(
            "/api/now/table/sys_properties",
            json={"name": secret_property(table), "type": "password2", "value": cfg.webhook_secret},
        ).raise_for_status()
        grant = {"user": one("sys_user", f"user_name={cfg.username}"),
                 "role": one("sys_user_role", f"name={DESKGATE_ROLE}")}  # fmt: skip
        client.post("/api/now/table/sys_user_has_role", json=grant).raise_for_status()


def _banner(url: str, config: ServiceNowSimConfig) -> str:
    return f"""  ServiceNow sandbox {url}/api/now/table
                     basic auth {config.username} : {config.password}
                     admin {config.admin_username} : {config.admin_password}
                     control API {url}{CONTROL_PREFIX}calls"""


SIMULATOR = Simulator(
    name="servicenow",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    secrets={
        f"DESKGATE_DESKS__{DESK.upper()}__PASSWORD": ServiceNowSimConfig.password,
        f"DESKGATE_DESKS__{DESK.upper()}__WEBHOOK_SECRET": ServiceNowSimConfig.webhook_secret,
    },
    dev_port=8102,
    banner=_banner,
    driver=ServiceNowDriver,
    admin=(ServiceNowSimConfig.admin_username, ServiceNowSimConfig.admin_password),
    import_update_set=import_update_set,
)
