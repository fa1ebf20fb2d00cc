"""``deskgate setup incode``: Incode has no API for its dashboard settings, so setup prints the
steps an admin takes there, with this deployment's values (never a secret's value: the
environment variable that holds it)."""

from __future__ import annotations

from config.settings import IncodeConfig
from connectors.provisioning import Action, Change

WEBHOOK_PATH = "/webhooks/incode"
TOKEN_PATH = "/webhooks/incode/token"  # noqa: S105 (a path)
EVENTS = "Session Succeeded, Session Failed, Pending Review"


def setup(config: IncodeConfig, public_url: str) -> list[Change]:
    base = public_url.rstrip("/")
    url = f"{base}{WEBHOOK_PATH}"
    steps = [
        Change(
            "dashboard",
            "Integrations > Helpdesk",
            Action.MANUAL,
            f"a workflow saved; its Integration Reference ID is {config.integration_reference}",
        ),
        Change(
            "dashboard",
            "Configuration > Webhooks",
            Action.MANUAL,
            f"point the session webhooks ({EVENTS}) at {url}, method POST",
        ),
        Change(
            "dashboard",
            "webhook header",
            Action.MANUAL,
            f"add the custom header {config.webhook_secret_header}: <the value of "
            "DESKGATE_INCODE__WEBHOOK_SECRET>",
        ),
    ]
    if config.webhook_oauth_client_id is not None:
        steps.append(
            Change(
                "dashboard",
                "Configuration > General (OAuth)",
                Action.MANUAL,
                f"auth URL {base}{TOKEN_PATH}, client id {config.webhook_oauth_client_id}, "
                "client secret <the value of DESKGATE_INCODE__WEBHOOK_OAUTH_CLIENT_SECRET>",
            )
        )
    return steps
