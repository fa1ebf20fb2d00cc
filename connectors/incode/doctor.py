"""``deskgate doctor``'s Incode checks: can Deskgate obtain both of its credentials?

The OAuth bearer (client credentials, for request-new) and the executive token (a dashboard
user's log-in, for reading results) are fetched afresh, past the cache, exactly as the worker
fetches them. A refusal names the credential and the settings that hold it; the API key travels
with the executive log-in only, so Incode's message tells which of the two it refused.
"""

from __future__ import annotations

from collections.abc import Callable

from config.privacy import display_url, mask_email, scrub
from config.settings import IncodeConfig
from connectors.http import ApiError, AuthFailed, Retriable
from connectors.incode.client import IncodeClient
from connectors.provisioning import Check, Status

SYSTEM = "incode"
OAUTH = "oauth token"
EXECUTIVE = "executive token"

FIX_CLIENT = (
    "set incode.client_id and DESKGATE_INCODE__CLIENT_SECRET to the OAuth client of the helpdesk "
    "integration in this Incode environment's dashboard"
)
FIX_EXECUTIVE = (
    "set incode.executive_email and DESKGATE_INCODE__EXECUTIVE_PASSWORD to a dashboard user of "
    "this Incode environment"
)
FIX_API_KEY = "set DESKGATE_INCODE__API_KEY to the API key of this Incode environment"


def check_incode(config: IncodeConfig, timeout: float) -> list[Check]:
    client = IncodeClient(config, timeout, deadline=timeout * 2)
    auth_at, api_at = display_url(config.auth_base), display_url(config.api_base)
    try:
        return [
            _obtain(
                OAUTH,
                client.fresh_bearer,
                f"client {config.client_id} at {auth_at}",
                lambda reason: FIX_CLIENT,
                f"check incode.auth_url ({auth_at}) and that this host can reach it",
            ),
            _obtain(
                EXECUTIVE,
                client.fresh_executive_token,
                f"user {mask_email(config.executive_email)} at {api_at}",
                lambda reason: FIX_API_KEY if "api-key" in reason.lower() else FIX_EXECUTIVE,
                f"check incode.api_url ({api_at}) and that this host can reach it",
            ),
        ]
    finally:
        client.close()


def _obtain(
    name: str,
    fetch: Callable[[], tuple[str, float]],
    whom: str,
    refused_fix: Callable[[str], str],
    unreachable_fix: str,
) -> Check:
    try:
        _, ttl = fetch()
    except AuthFailed as exc:
        reason = scrub(exc.reason)
        return Check(
            SYSTEM, name, Status.FAIL, f"Incode refused {whom}: {reason}", refused_fix(reason)
        )
    except Retriable as exc:
        return Check(
            SYSTEM, name, Status.FAIL, f"no answer for {whom}: {scrub(exc.reason)}", unreachable_fix
        )
    except ApiError as exc:  # another 4xx: not an Incode endpoint, or a request it cannot take
        detail = f"Incode answered {exc.status} for {whom}: {scrub(exc.reason)}"
        return Check(SYSTEM, name, Status.FAIL, detail, unreachable_fix)
    return Check(SYSTEM, name, Status.OK, f"obtained for {whom} (valid {ttl:.0f} s)")
