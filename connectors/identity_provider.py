"""The contract every identity provider (IdP) kind implements, and the values that cross it.

An IdP is the company's directory of record (Okta, Microsoft Entra ID). With one configured for
a desk, Deskgate reads from it who the employee is (the login hint and the contact the link goes
to come from the IdP's HR-sourced record, never from the desk's editable profile), whether they
hold admin rights, and when their contact last changed; after a verified result it performs the
one action the ticket's reason allows (unlock, reset MFA, ...) itself. It also reads the IdP's
own audit log, so that an admin action no verified ticket explains can be told apart.

An IdP kind knows nothing of Celery, Redis, desks or the lifecycle, exactly as a desk kind does:
its package (``connectors/okta/``, ``connectors/entra/``) holds its config model, a connector
implementing ``IdentityProvider`` and a ``KIND`` (``connectors/idp_kind.py``); one line in
``connectors/registry.py`` registers it. Errors are ``connectors.http``'s typed errors
(``RateLimited`` carries the wait; ``AuthFailed`` a missing permission; ``NotFound``).

No secret ever crosses this contract: an action that would produce one (a temporary password,
a Temporary Access Pass, a password-reset URL) is either delivered by the IdP itself to the
employee's contact of record, or not offered at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

# What Deskgate may do in an IdP after a verified result. Each kind says which it supports
# (``IdentityProvider.actions``); a reason's ``actions`` may name only these.
Action = Literal["unlock", "reset_mfa", "reset_password", "revoke_sessions"]
ACTIONS: tuple[Action, ...] = ("unlock", "reset_mfa", "reset_password", "revoke_sessions")

# How a desk's requester is found in the IdP: by the requester's e-mail, by the IdP login (the
# desk's e-mail compared with the login), or by the IdP's immutable id.
Match = Literal["email", "login", "id"]

# The fields of an IdP user whose age decides where a link goes and whose enrolment it matches.
ContactField = Literal["login", "email", "phone"]


@dataclass(frozen=True)
class IdpUser:
    """An employee as the IdP records them. ``id`` is immutable (Okta ``00u…``, Entra object
    id); ``login`` is what Incode's loginHint carries (Okta ``profile.login``, Entra
    ``userPrincipalName``); ``email`` and ``phone`` are the contacts of record."""

    id: str
    login: str
    email: str | None
    phone: str | None
    status: str  # the IdP's own word (Okta ACTIVE, LOCKED_OUT, DEPROVISIONED…; Entra enabled…)
    active: bool  # may be verified and acted on: not deactivated, suspended or disabled
    privileged: bool  # holds an admin role, or belongs to a configured privileged group
    # What made it privileged (role types such as SUPER_ADMIN, group names): never personal data.
    privileged_because: tuple[str, ...] = ()
    locked: bool = False  # locked out now (Okta LOCKED_OUT); an unlock has something to do


@dataclass(frozen=True)
class ActionDone:
    """An action the IdP accepted. ``request_id`` is the IdP's id for the call (Okta's
    ``X-Okta-Request-Id``, Graph's ``request-id``), recorded so the IdP's own log entry can be
    matched to it; ``expect`` tells the employee what happens next, in one sentence, with no
    secret and no contact in it."""

    action: Action
    request_id: str | None
    expect: str


# What an IdP's audit log entry means to Deskgate (issue: bypass detection). ``other`` entries
# are read past, never reported.
EventKind = Literal[
    "reset_mfa",  # factors reset or deactivated, security info deleted by someone
    "method_registered",  # security info registered by an admin (a new factor, a phone)
    "temporary_access",  # a Temporary Access Pass / Code created
    "unlock",
    "reset_password",
    "revoke_sessions",
    "contact_changed",  # login, email or phone of the user's profile changed
    "other",
]


@dataclass(frozen=True)
class IdpEvent:
    """One entry of the IdP's audit log, read as far as Deskgate needs it."""

    id: str  # the log's own id (Okta ``uuid``, Graph ``id``): what deduplicates
    at: float  # when it happened, epoch seconds
    kind: EventKind
    raw_type: str  # the IdP's own name (Okta ``eventType``, Graph ``activityDisplayName``)
    target_id: str | None  # the IdP user it acted on
    actor_id: str | None  # who did it: a user's id, or an app's client id
    actor_is_app: bool  # done by an application (Deskgate's own client, or another)
    self_service: bool  # the user on themselves, or the IdP's own self-service flow
    request_id: str | None  # Okta's requestId / transaction id; Graph's correlationId
    changed: tuple[ContactField, ...] = ()  # for contact_changed: which fields


class IdentityProvider(Protocol):
    """One configured IdP (one Okta org, one Entra tenant)."""

    name: str
    actions: frozenset[Action]  # what this kind can perform (Entra has no unlock call)

    def find_user(self, match: Match, value: str) -> IdpUser | None:
        """The one user whose ``match`` is ``value``, re-read by id (searches are eventually
        consistent), or None when the IdP knows no such user. More than one match raises
        ``Fatal``: an ambiguous person is never guessed."""
        ...

    def changed_at(self, user: IdpUser, field: ContactField) -> float | None:
        """When ``field`` of the user's record was last set, from the IdP's own log, in epoch
        seconds; None when the log cannot tell (older than its retention, or never logged):
        the caller then sends no link. A user created within the log's retention and never
        changed since dates the field from the creation."""
        ...

    def perform(self, user: IdpUser, action: Action) -> ActionDone:
        """Do ``action`` to ``user`` now, once. Raises the typed errors; ``Fatal`` when the
        IdP refuses it for this user (an AD-sourced lockout, nothing to reset)."""
        ...

    def read_log(self, cursor: str | None) -> tuple[list[IdpEvent], str]:
        """Audit log entries after ``cursor`` (None: from now), oldest first, and the cursor to
        continue from (durable: it survives a restart without a gap or a double; entries that
        may arrive late are covered by overlapping windows, deduplicated by id by the caller)."""
        ...

    def close(self) -> None: ...
