"""``deskgate setup <desk>`` for ServiceNow: the update set file, and/or the same records
through the Table API as an admin (``records.wanted`` is the one list both use).

Through the API each record is found by its natural key, created when missing (with the sys_id
the update set gives it, so both paths yield the same records), patched only in the fields that
Deskgate needs and that differ, and otherwise left alone: what an admin tightened (a read-only
status field, an extra condition on the UI action, extra roles on an ACL) is kept and reported,
never reverted (``records.Wanted.judge``). A reference named by its record's name (a role, the
integration user) is looked up first. The secret property's value cannot be read back (password2
is stored encrypted), so setup records a fingerprint of it in the property's description: an
HMAC of a fixed text keyed by the secret, which tells whether the value is the configured one
without revealing it.
"""

from __future__ import annotations

from typing import Any

import httpx

from config import files
from connectors.http import ApiError, json_body, new_client, request
from connectors.provisioning import Action, Change, ProvisioningError, SetupRequest, fingerprint
from connectors.servicenow import update_set
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import describe_error
from connectors.servicenow.records import (
    DESKGATE_ROLE,
    Wanted,
    integration_user_role,
    secret_property,
    sys_id_for_name,
    wanted,
)

SYSTEM = "servicenow"
FINGERPRINT = "Fingerprint: "
ACL_TABLES = ("sys_security_acl", "sys_security_acl_role")
ELEVATE = (
    "ACLs are written only with the security_admin role elevated: give the admin "
    "security_admin and elevate it (or import the update set after Elevate Role)"
)


def secret_env(desk: str) -> str:
    return f"DESKGATE_DESKS__{desk.upper()}__WEBHOOK_SECRET"


def setup(req: SetupRequest[ServiceNowDeskConfig]) -> list[Change]:
    changes: list[Change] = []
    if req.update_set is not None:
        changes.append(_write_update_set(req))
    if req.apply:
        changes += _apply(req)
    elif req.update_set is not None:
        changes.append(
            Change(
                "property", secret_property(req.config.table), Action.MANUAL,
                "once, after the first commit: create the system property "
                f"{secret_property(req.config.table)} "
                f"(type password2) with the value of {secret_env(req.desk)}, or run setup with "
                "--apply; the update set never carries it, so importing it again keeps it",
            )
        )  # fmt: skip
        role = integration_user_role(req.config)
        changes.append(Change(role.kind, role.name, Action.MANUAL, _user_role_step(role)))
    return changes


def _write_update_set(req: SetupRequest[ServiceNowDeskConfig]) -> Change:
    path = req.update_set
    assert path is not None
    old = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    # The same records under the file's own date are the same file: it is left as it is.
    same = update_set.render(req.desk, req.config, req.public_url, update_set.unload_date(old))
    name = str(path)
    if old == same:
        return Change("update set", name, Action.UNCHANGED)
    detail = (
        "import it as an admin with security_admin elevated (it holds ACLs): System Update "
        "Sets > Retrieved Update Sets > Import Update Set from XML, then Preview and Commit"
    )
    if not req.dry_run:
        # never through a planted symbolic link
        files.write_output(path, update_set.render(req.desk, req.config, req.public_url))
    return Change("update set", name, Action.WRITE, detail)


def _apply(req: SetupRequest[ServiceNowDeskConfig]) -> list[Change]:
    if req.admin is None:
        raise ProvisioningError(
            "ServiceNow setup --apply needs an admin account (--admin-user and its password), "
            "not Deskgate's integration user: only an admin may write fields, rules and properties"
        )
    config = req.config
    if config.username and req.admin.user == config.username:
        raise ProvisioningError(
            f"the admin account must not be Deskgate's integration user {config.username!r}: "
            "that user keeps only the roles Deskgate needs every day"
        )
    secret = config.webhook_secret.get_secret_value() if config.webhook_secret else ""
    auth = (req.admin.user, req.admin.secret.get_secret_value())
    changes = []
    actual: dict[str, str] = {}  # a record's sys_id here -> its sys_id on the instance
    with new_client(
        config.base, req.timeout, deadline=req.timeout * 3, auth=auth,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    ) as client:  # fmt: skip
        records = wanted(req.desk, config, req.public_url, secret)
        for record in records:
            if record.secret and not secret:
                changes.append(
                    Change(
                        "property", record.name, Action.MANUAL,
                        f"the desk has no webhook_secret: set {secret_env(req.desk)} (16+ "
                        "characters) and run setup again; until then pushes are off, polls work",
                    )
                )  # fmt: skip
                continue
            changes.append(_ensure(client, record, req.dry_run, actual))
        return _report_extra_roles(client, records, changes, actual)


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = request(client, SYSTEM, method, url, describe_error, **kwargs)
    except ApiError as exc:
        path = url.split("?")[0]
        table = path.removeprefix("/api/now/table/").split("/")[0]
        hint = f" ({ELEVATE})" if method != "GET" and table in ACL_TABLES else ""
        raise ProvisioningError(f"ServiceNow refused {method} {path}: {exc}{hint}") from None
    return json_body(SYSTEM, response).get("result")


def _lookup(client: httpx.Client, table: str, field: str, value: str) -> str | None:
    if "^" in value:  # would end the encoded query's condition and start another
        raise ProvisioningError(f"{table}.{field} {value!r}: a name with '^' cannot be looked up")
    rows = _call(client, "GET", f"/api/now/table/{table}",
                 params={"sysparm_query": f"{field}={value}", "sysparm_fields": "sys_id",
                         "sysparm_limit": 1})  # fmt: skip
    return str(rows[0]["sys_id"]) if rows else None


def _resolved(
    client: httpx.Client, record: Wanted, actual: dict[str, str]
) -> tuple[dict[str, str], str]:
    """The record's values with each reference as the instance's sys_id, or the name of what
    the instance lacks."""
    values = {k: actual.get(v, v) for k, v in record.values.items()}
    for name, (table, by) in record.refs.items():
        ours = sys_id_for_name(table, by, values[name])
        found = actual.get(ours) or _lookup(client, table, by, values[name])
        if found is None:
            return values, f"{table} {values[name]!r}"
        values[name] = found
    return values, ""


def _user_role_step(record: Wanted) -> str:
    user = record.values["user"]
    return (
        f"grant the role {DESKGATE_ROLE} to Deskgate's integration user {user} (User "
        f"Administration > Users > {user} > Roles > Edit): only it may write the status field"
    )


def _ensure(client: httpx.Client, record: Wanted, dry_run: bool, actual: dict[str, str]) -> Change:
    if record.table == "sys_user_has_role":
        try:
            return _ensure_values(client, record, dry_run, actual)
        except ProvisioningError as exc:
            return Change(record.kind, record.name, Action.MANUAL,
                          f"{_user_role_step(record)} ({exc})")  # fmt: skip
    return _ensure_values(client, record, dry_run, actual)


def _ensure_values(
    client: httpx.Client, record: Wanted, dry_run: bool, actual: dict[str, str]
) -> Change:
    path = f"/api/now/table/{record.table}"
    wanted_values, missing = _resolved(client, record, actual)
    if missing:
        if record.table == "sys_user_has_role":
            raise ProvisioningError(f"no {missing} on the instance")
        raise ProvisioningError(
            f"{record.kind} {record.name}: the instance has no {missing}; create it, or change "
            "the desk's verification_roles"
        )
    query = "^".join(f"{k}={wanted_values[k]}" for k in sorted(record.key))
    if record.secret:
        description = wanted_values["description"]
        wanted_values["description"] = (
            f"{description} {FINGERPRINT}{fingerprint(wanted_values['value'])}"
        )
    rows = _call(
        client, "GET", path,
        params={"sysparm_query": query, "sysparm_limit": 1,
                "sysparm_fields": ",".join(["sys_id", *wanted_values]),
                # A reference (a column's internal_type) as its value, not {link, value}.
                "sysparm_exclude_reference_link": "true"},
    )  # fmt: skip
    if not rows:
        actual[record.sys_id] = record.sys_id
        if not dry_run:
            _call(client, "POST", path, json={"sys_id": record.sys_id, **wanted_values})
        return Change(record.kind, record.name, Action.CREATE)
    found = rows[0]
    actual[record.sys_id] = str(found["sys_id"])

    def verdict(name: str, want: str) -> str:
        got = str(found.get(name, ""))
        if record.secret:  # password2 is never read back in clear: its fingerprint tells
            return "ok" if name == "value" or got == want else "repair"
        return record.judge(name, got)

    judged = {
        k: verdict(k, v) for k, v in wanted_values.items()
        if k not in record.refs and k not in record.key
    }  # fmt: skip
    differ = [k for k, verdict in judged.items() if verdict == "repair"]
    kept = sorted(k for k, verdict in judged.items() if verdict == "kept")
    kept_note = f"kept the admin's {', '.join(kept)}" if kept else ""
    if not differ:
        return Change(record.kind, record.name, Action.UNCHANGED, kept_note)
    if record.secret:  # the description's fingerprint differs: the value is another one
        differ = [*differ, "value"]
    if not dry_run:
        _call(
            client, "PATCH", f"{path}/{found['sys_id']}",
            json={k: wanted_values[k] for k in differ},
        )  # fmt: skip
    detail = "; ".join(filter(None, ["fields: " + ", ".join(sorted(differ)), kept_note]))
    return Change(record.kind, record.name, Action.UPDATE, detail)


def acl_roles(client: httpx.Client, acl_id: str) -> set[str]:
    """The names of the roles an ACL passes."""
    rows = _call(client, "GET", "/api/now/table/sys_security_acl_role",
                 params={"sysparm_query": f"sys_security_acl={acl_id}",
                         "sysparm_fields": "sys_user_role.name",
                         "sysparm_exclude_reference_link": "true"})  # fmt: skip
    return {str(r.get("sys_user_role.name", "")) for r in rows} - {""}


def _report_extra_roles(
    client: httpx.Client, records: list[Wanted], changes: list[Change], actual: dict[str, str]
) -> list[Change]:
    """Each ACL's change, saying which roles an admin added to it (kept, never removed)."""
    out = list(changes)
    for i, record in enumerate(records):
        if record.table != "sys_security_acl" or record.sys_id not in actual:
            continue
        ours = {r.values["sys_user_role"] for r in records
                if r.values.get("sys_security_acl") == record.sys_id}  # fmt: skip
        extra = sorted(acl_roles(client, actual[record.sys_id]) - ours)
        if extra:
            note = "kept the admin's extra roles: " + ", ".join(extra)
            change = out[i]
            detail = "; ".join(filter(None, [change.detail, note]))
            out[i] = Change(change.kind, change.name, change.action, detail)
    return out
