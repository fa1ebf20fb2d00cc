"""Action requests: how an agent asks, from the ticket, for an identity-provider action after a
verified result (a Zendesk tag ``<prefix>do_<action>``, a ServiceNow choice field), read the same
way by every desk kind: one known action, or none."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from connectors.identity_provider import ACTIONS

log = structlog.get_logger("deskgate.desk")

# What agents see on the macros and UI actions that ask for each action.
ACTION_LABELS: dict[str, str] = {
    "unlock": "unlock the account",
    "reset_mfa": "reset MFA",
    "reset_password": "reset the password",
    "revoke_sessions": "sign out everywhere",
}


def request_title(action: str) -> str:
    """A macro's or UI action's name: "Deskgate: reset MFA"."""
    return f"Deskgate: {ACTION_LABELS.get(action, action)}"


def requested_action(asked: Iterable[str], *, desk: str, ticket: str) -> str | None:
    """The one action a ticket asks for, from every action value it carries (tag suffixes,
    a field's value): None for none, for an unknown one, and for two at once, which is logged
    (an ambiguous request is never guessed)."""
    values = sorted(set(asked))
    if len(values) > 1:
        # Anyone may write tags and fields: only the known action names are logged.
        known = [v for v in values if v in ACTIONS]
        log.warning("action_request_ambiguous", desk=desk, ticket=ticket, asked=len(values),
                    actions=known)  # fmt: skip
        return None
    return values[0] if values and values[0] in ACTIONS else None
