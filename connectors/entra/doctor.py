"""``deskgate doctor`` for an Entra tenant, reading only: can Deskgate's app get a token, and
does it hold (with admin consent) each application permission the connector uses?

A token's ``roles`` claim lists the application permissions granted to the app, so one token
proves them all, the write ones included; the reads behind them are tried as well, because a
consented permission still meets tenant policy. A write is never tried: whether one would pass
for a given user (a restricted-management administrative unit) cannot be proven by reading,
which the write permission's line says.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from connectors.entra.config import EntraIdpConfig
from connectors.entra.connector import EntraConnector
from connectors.http import ApiError
from connectors.provisioning import Check, Status

# (permission, what it is for, higher permissions that include it, a read proving it or None)
NEEDED: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    (
        "User.Read.All",
        "find the employee",
        ("User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
        "/v1.0/users",
    ),
    (
        "RoleManagement.Read.Directory",
        "tell admins apart",
        (
            "RoleManagement.Read.All",
            "RoleManagement.ReadWrite.Directory",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ),
        None,
    ),
    ("UserAuthenticationMethod.ReadWrite.All", "reset MFA", (), None),
    (
        "User.RevokeSessions.All",
        "sign the employee out everywhere",
        ("User.ReadWrite.All", "Directory.ReadWrite.All"),
        None,
    ),
    (
        "AuditLog.Read.All",
        "date contact changes and read the audit log",
        (),
        "/v1.0/auditLogs/directoryAudits",
    ),
)


def _roles(token: str) -> set[str] | None:
    """The ``roles`` claim of a JWT access token (read, not verified: Graph verifies it)."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    except (IndexError, ValueError):
        return None
    return {str(r) for r in claims.get("roles") or []}


def doctor(name: str, config: EntraIdpConfig, timeout: float = 10.0) -> list[Check]:
    system, checks = f"entra:{name}", []
    idp = EntraConnector(name, config, timeout)
    try:
        try:
            token = idp.auth.token.get()
        except ApiError as exc:
            credential = "client secret" if config.client_secret else "certificate"
            fix = f"check tenant_id, client_id and the app's {credential} in Entra"
            return [Check(system, "token", Status.FAIL, str(exc), fix)]
        checks.append(Check(system, "token", Status.OK, f"app {config.client_id}"))
        roles = _roles(token)
        for permission, purpose, higher, read in NEEDED:
            checks.append(_permission(idp, system, roles, permission, purpose, higher, read))
    finally:
        idp.close()
    return checks


def _permission(
    idp: EntraConnector,
    system: str,
    roles: set[str] | None,
    permission: str,
    purpose: str,
    higher: tuple[str, ...],
    read: str | None,
) -> Check:
    name = f"{permission} ({purpose})"
    fix = f"grant the app the application permission {permission} and grant admin consent"
    if roles is not None and not roles & {permission, *higher}:
        return Check(system, name, Status.FAIL, "not in the token's roles", fix)
    if read is not None:
        try:
            idp._get(read, **{"$top": "1"})
        except ApiError as exc:
            return Check(system, name, Status.FAIL, str(exc), fix)
    if roles is None:
        return Check(
            system,
            name,
            Status.WARN,
            "the token is not a JWT: the roles claim cannot "
            "be read" + ("" if read else ", and no read proves this one"),
            fix,
        )
    if permission.endswith("ReadWrite.All") or permission == "User.RevokeSessions.All":
        return Check(
            system,
            name,
            Status.OK,
            "granted; a write is never tried, so users in a "
            "restricted-management administrative unit may still refuse it",
        )
    return Check(system, name, Status.OK, "granted" + (" and read" if read else ""))
