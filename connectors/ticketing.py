"""The contract every ticketing desk implements, and the values that cross it.

A desk knows how to find flagged tickets, read a ticket and its requester's identity of record,
gate a ticket and record an outcome. It knows nothing of Celery, Redis or the lifecycle: the
worker says *what* to write (a state marker and a note), the desk knows *how*.

Adding a desk kind means one package beside ``zendesk/`` and ``servicenow/`` (its config model, a
connector implementing ``Desk``, its push parsing, and a ``KIND`` tying them together:
``connectors/desk_kind.py``) and one line in ``connectors/registry.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# The state markers Deskgate writes on tickets (tags ``<prefix><marker>`` on Zendesk, the status
# field's value on ServiceNow). ``pending`` is the gate; the others are outcomes.
MARKERS = ("pending", "verified", "failed", "review", "expired", "error")
OPEN_MARKERS = frozenset({"pending", "review"})


@dataclass(frozen=True)
class Person:
    """A requester as the ticketing system records them (never as a ticket's text claims)."""

    id: str
    email: str | None = None
    phone: str | None = None
    external_id: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None  # when the record was created, if the desk says


@dataclass(frozen=True)
class Ticket:
    id: str  # the API's id (Zendesk ticket id, ServiceNow sys_id)
    display_id: str  # what people call it ("#42", "INC0010001")
    requester_id: str | None
    reason: str | None  # why it needs verification (from its trigger), None if not flagged
    marker: str | None  # the Deskgate state marker now on it, if any
    active: bool  # a verification may start (not solved/closed/resolved)
    writable: bool  # it still accepts notes (not closed)
    status: str  # the desk's own status value
    version: str  # what a safe write compares against (updated_at; sys_updated_on#sys_mod_count)
    requester: Person | None = None  # filled when the desk reads it in the same call
    held: bool = False  # in the desk's gate status (Zendesk's gate status, ServiceNow's state)
    # The identity-provider action the ticket asks for now (one of ``identity_provider.ACTIONS``):
    # a Zendesk tag ``<prefix>do_<action>``, a ServiceNow action field. None when it asks for
    # none, for an unknown one, or for two at once (an ambiguous request is never guessed).
    action_request: str | None = None
    # What people set to flag tickets (Zendesk's tags other than Deskgate's markers, ServiceNow's
    # flag field), as the desk holds it: ``deskgate explain`` spots a tag that is almost a trigger.
    # Not compared: a ticket rebuilt from the store has none, and ``reason`` already says what
    # of them matters to a conditional write.
    labels: tuple[str, ...] = field(default=(), compare=False)


class HeaderLookup(Protocol):
    """Request headers, read by lower-case name: a dict with lower-cased names, or Flask's
    ``request.headers`` as it is (case-insensitive; copying it into a dict cost a webhook 6-12%
    of its CPU)."""

    def get(self, key: str, default: str, /) -> str: ...


@dataclass(frozen=True)
class PushAuth:
    """What arrived with a push, for the desk to authenticate."""

    headers: HeaderLookup
    body: bytes
    now: float
    tolerance_seconds: int


class Desk(Protocol):
    """One configured ticketing desk (one Zendesk account, one ServiceNow table)."""

    name: str

    def find_flagged(self, cursor: str | None, *, gated: bool) -> tuple[list[str], str | None]:
        """Ids of flagged tickets without an open gate (the polling safety net), or with
        ``gated`` those that carry one (the rare scan that recovers what Redis lost).

        A desk that cannot read all of them in one go returns a cursor to continue from on the
        next poll; ``None`` means the scan is complete and the next poll starts over."""
        ...

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        """The ticket now, or None if it no longer exists."""
        ...

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        """The internal notes Deskgate's own API user wrote on the ticket that contain ``text``,
        newest first (rarely used: only to recover verifications that Redis lost). Notes by
        anyone else are left out: whoever can write on a ticket can write any text."""
        ...

    def changed_at(self, person: Person, field: str) -> float | None:
        """When ``field`` of the requester's record (``email``, ``phone``, ``external_id`` or
        ``user_field:<key>``) was set or last changed, in epoch seconds; None if the desk
        cannot tell."""
        ...

    def get_requester(self, ticket: Ticket) -> Person | None:
        """The requester's record, or None if the ticket has none."""
        ...

    def flagged_by(self, ticket: Ticket) -> str | None:
        """Who flagged the ticket, by the desk's own record of the change (its audit history,
        never the ticket's text): the record id of whoever last added a trigger tag or set the
        flag field, for the audit trail. Never an e-mail address. None if the desk's history
        does not say. One call."""
        ...

    def gate_lifted_by(self, ticket: Ticket) -> str | None:
        """Who last took the ticket out of the gate status or removed the ``pending`` marker,
        as the desk names its agents (a user id, a user name: never an e-mail), read from the
        desk's own history of the ticket; None if the desk cannot tell."""
        ...

    def find_marked(self, marker: str, cursor: str | None) -> tuple[list[str], str]:
        """Ids of tickets carrying the final ``marker``, updated at or after where ``cursor``
        (None: the beginning) left off, a bounded number of pages per call, and the cursor the
        next call continues from (the marker audit keeps it, so each run reads what changed)."""
        ...

    # Both writes are conditional: they raise ``Conflict`` when the ticket changed since
    # ``ticket.version`` (Zendesk's Safe Update; ServiceNow re-reads first), and ``NotFound`` when
    # it was deleted. So the worker may write against the ticket its own last write returned,
    # without reading it again, and re-reads only when someone else touched it.

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        """One write: internal note, gate status, the ``pending`` marker. Returns the ticket as
        the write left it."""
        ...

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        """One write: internal note, the marker in place of any other, trigger consumed unless the
        verification is still open; with ``release`` the ticket leaves the gate status. Returns
        the ticket as the write left it."""
        ...

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        """Who asked for ``action`` on the ticket, from the desk's own record of the change (the
        newest one that set the request): their user id or user name, never an e-mail. None when
        the desk's record cannot tell."""
        ...

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        """One conditional write: the action request removed and an internal note, nothing else
        touched. Raises ``Conflict``/``NotFound`` as the writes above do."""
        ...

    def close(self) -> None: ...
