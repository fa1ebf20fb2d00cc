"""``deskgate doctor``'s Okta checks: each permission Deskgate's use needs, proved by reading
only (never by acting on anyone): the credential (and, for an OAuth app, the scopes Okta
granted), reading users, reading their admin roles, reading the System Log."""

from __future__ import annotations

import time
from collections.abc import Callable

from config.privacy import scrub
from connectors.http import ApiError, AuthFailed
from connectors.okta.config import MANAGE_SCOPE, OktaIdpConfig
from connectors.okta.connector import OktaConnector
from connectors.provisioning import Check, Status

TIMEOUT = 10.0
FIX_APP = (
    "in Okta's admin console, grant the API Services app {scope} (Okta API Scopes tab) and "
    "assign it an admin role (Admin roles tab)"
)
FIX_TOKEN = "create the API token as an admin whose role allows {scope}"  # noqa: S105 (a text)
FIX_DPOP = (
    "in the API Services app's General tab, turn off 'Require Demonstrating Proof of Possession "
    "(DPoP) header in token requests' (Deskgate signs a client assertion, not DPoP proofs)"
)


def doctor(name: str, config: OktaIdpConfig) -> list[Check]:
    system = f"okta:{name}"
    connector = OktaConnector(name, config, TIMEOUT, TIMEOUT * 2)
    fix = FIX_APP if config.oauth else FIX_TOKEN
    checks: list[Check] = []

    def prove(what: str, scope: str, read: Callable[[], str]) -> bool:
        try:
            detail = read()
        except AuthFailed as exc:
            todo = FIX_DPOP if "dpop" in exc.reason.lower() else fix.format(scope=scope)
            checks.append(Check(system, what, Status.FAIL, scrub(exc.reason), todo))
            return False
        except ApiError as exc:
            reason = f"no usable answer from {config.base}: {scrub(exc.reason)}"
            checks.append(Check(system, what, Status.FAIL, reason, "check base_url"))
            return False
        checks.append(Check(system, what, Status.OK, detail))
        return True

    try:
        if config.oauth:

            def token() -> str:
                _, ttl = connector.auth.fetch()
                return f"scopes granted: {' '.join(connector.auth.granted)} (valid {ttl:.0f} s)"

            if not prove("oauth token", " ".join(config.scopes), token):
                return checks
        first: list[str] = []

        def users() -> str:
            found = connector._call("GET", "/api/v1/users", params={"limit": 1})
            first.extend(str(u["id"]) for u in found.json()[:1])
            return "users can be read"

        def roles() -> str:
            if not first:
                return "no user to read roles of (an empty org)"
            connector._call("GET", f"/api/v1/users/{first[0]}/roles")
            return "admin roles can be read (privileged employees are recognised)"

        def logs() -> str:
            now = time.time()
            params = {
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "limit": 1,
            }
            connector._call("GET", "/api/v1/logs", params=params)
            return "the System Log can be read"

        if prove("read users", "okta.users.read", users):
            prove("read admin roles", "okta.roles.read", roles)
        prove("read the System Log", "okta.logs.read", logs)
        if config.manage and config.oauth and MANAGE_SCOPE in connector.auth.granted:
            checks.append(
                Check(
                    system,
                    "act on users",
                    Status.OK,
                    f"{MANAGE_SCOPE} granted; the app's admin role decides on whom (not "
                    "provable without acting)",
                )
            )
        return checks
    finally:
        connector.close()
