"""``deskgate setup <desk>`` for ServiceNow: the update set file, and/or the same records
through the Table API as an admin (``records.wanted`` is the one list both use).

Through the API each record is found by its natural key, created when missing (with the sys_id
the update set gives it, so both paths yield the same records), patched only in the fields that
differ, and otherwise left alone. The secret property's value cannot be read back (password2 is
stored encrypted), so setup records a fingerprint of it in the property's description: an HMAC
of a fixed text keyed by the secret, which tells whether the value is the configured one without
revealing it.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.http import ApiError, json_body, new_client, request
from connectors.provisioning import Action, Change, ProvisioningError, SetupRequest, fingerprint
from connectors.servicenow import update_set
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import describe_error
from connectors.servicenow.records import Wanted, secret_property, wanted

SYSTEM = "servicenow"
FINGERPRINT = "Fingerprint: "


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
    return changes


def _write_update_set(req: SetupRequest[ServiceNowDeskConfig]) -> Change:
    path = req.update_set
    assert path is not None
    data = update_set.render(req.desk, req.config, req.public_url)
    name = str(path)
    if path.is_file() and path.read_bytes() == data:
        return Change("update set", name, Action.UNCHANGED)
    detail = "import it: System Update Sets > Retrieved Update Sets > Import Update Set from XML"
    if not req.dry_run:
        path.write_bytes(data)
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
    with new_client(
        config.base, req.timeout, deadline=req.timeout * 3, auth=auth,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    ) as client:  # fmt: skip
        for record in wanted(req.desk, config, req.public_url, secret):
            if record.secret and not secret:
                changes.append(
                    Change(
                        "property", record.name, Action.MANUAL,
                        f"the desk has no webhook_secret: set {secret_env(req.desk)} (16+ "
                        "characters) and run setup again; until then pushes are off, polls work",
                    )
                )  # fmt: skip
                continue
            changes.append(_ensure(client, record, req.dry_run))
    return changes


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = request(client, SYSTEM, method, url, describe_error, **kwargs)
    except ApiError as exc:
        raise ProvisioningError(f"ServiceNow refused {method} {url.split('?')[0]}: {exc}") from None
    return json_body(SYSTEM, response).get("result")


def _ensure(client: httpx.Client, record: Wanted, dry_run: bool) -> Change:
    path = f"/api/now/table/{record.table}"
    wanted_values = dict(record.values)
    if record.secret:
        description = wanted_values["description"]
        wanted_values["description"] = (
            f"{description} {FINGERPRINT}{fingerprint(wanted_values['value'])}"
        )
    rows = _call(
        client, "GET", path,
        params={"sysparm_query": record.query, "sysparm_limit": 1,
                "sysparm_fields": ",".join(["sys_id", *wanted_values]),
                # A reference (a column's internal_type) as its value, not {link, value}.
                "sysparm_exclude_reference_link": "true"},
    )  # fmt: skip
    if not rows:
        if not dry_run:
            _call(client, "POST", path, json={"sys_id": record.sys_id, **wanted_values})
        return Change(record.kind, record.name, Action.CREATE)
    found = rows[0]
    differ = [
        k for k, v in wanted_values.items() if k != "value" or not record.secret
        if str(found.get(k, "")) != v
    ]  # fmt: skip
    if not differ:
        return Change(record.kind, record.name, Action.UNCHANGED)
    if record.secret:  # the description's fingerprint differs: the value is another one
        differ = [*differ, "value"]
    if not dry_run:
        _call(
            client, "PATCH", f"{path}/{found['sys_id']}",
            json={k: wanted_values[k] for k in differ},
        )  # fmt: skip
    return Change(record.kind, record.name, Action.UPDATE, "fields: " + ", ".join(sorted(differ)))
