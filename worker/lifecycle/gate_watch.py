"""A gate lifted before the result: the ticket left the desk's gate status, or lost its
``pending`` marker, while its verification was still open.

Whoever did it (an agent who wanted to get on with the work, or cancelled the verification on
purpose by removing the marker: the same event) is read from the desk's own history of the
ticket, as the desk names agents, and recorded once per lift: an audit event
``ticket.gate_lifted`` (code ``hold_lifted`` or ``marker_removed``, ``actor``), the metric, and
on the verification, so its outcome note says so. With ``gate_enforcement = "restore"`` the gate
(hold, marker and a gate note saying why) is written again, conditionally, until the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

import structlog

from config.privacy import scrub
from connectors.http import Fatal
from connectors.ticketing import OPEN_MARKERS, Desk, Ticket
from worker.lifecycle import FINAL, State, notes
from worker.lifecycle.store import Store, Verification

log = structlog.get_logger("deskgate.gate_watch")

WATCHED = frozenset({State.SENT, State.REVIEW})  # the gate is on the ticket until the result
UNKNOWN_ACTOR = "someone the desk does not name"
ACTOR_LENGTH = 80

Write = Callable[[Desk, Ticket, Callable[[Ticket], Ticket]], Ticket]


def lifted(v: Verification, ticket: Ticket) -> str:
    """How the gate of ``v`` was lifted (an audit code), or "" if it holds."""
    result_unwritten = v.state in FINAL and v.unwritten  # lifted while the result came
    if not v.gated or not ticket.writable or (v.state not in WATCHED and not result_unwritten):
        return ""
    if ticket.marker not in OPEN_MARKERS:
        return "marker_removed"
    return "" if ticket.held else "hold_lifted"


class GateWatch:
    def __init__(self, store: Store, seal: notes.Seal, write: Write) -> None:
        self.store = store
        self.seal = seal
        self.write = write  # the flow's conditional write, re-reading on a 409

    def check(
        self, desk: Desk, v: Verification, ticket: Ticket, *, restore: bool, now: float
    ) -> tuple[Verification, Ticket]:
        """Record a lift of ``v``'s gate seen on ``ticket`` (once, unless restored since: each
        lift after a restore is a new one), and with ``restore`` put the gate back."""
        how = lifted(v, ticket)
        if not how or (v.lifted_by and not restore):
            return v, ticket
        actor = self._actor(desk, ticket)
        self.store.update(v.id, lifted_by=actor)
        v = replace(v, lifted_by=actor)
        self.store.ticket_event(
            "ticket.gate_lifted", how, now, asdict(v), actor=actor,
            detail=f"the gate was lifted before the result ({how.replace('_', ' ')}) by {actor}",
        )  # fmt: skip
        log.warning("gate lifted before the result", how=how, actor=actor)
        if restore:
            ticket = self._restore(desk, v, ticket, now)
        return v, ticket

    @staticmethod
    def _actor(desk: Desk, ticket: Ticket) -> str:
        """Who lifted it, as the desk names its agents, on one line. A user name may be an
        e-mail address (ServiceNow's often are): masked, as everywhere. A history Deskgate may
        not read (refused) leaves the actor unknown rather than the lift unrecorded."""
        try:
            found = desk.gate_lifted_by(ticket)
        except Fatal as exc:
            log.warning("the desk's history of the ticket could not be read", error=str(exc))
            found = None
        # One short line: a name is the desk's data, and must not add lines (a "Seal:" line
        # copied from an older note) to the notes it is written into.
        name = " ".join((found or "").split())[:ACTOR_LENGTH]
        return scrub(name) if name else UNKNOWN_ACTOR

    def _restore(self, desk: Desk, v: Verification, ticket: Ticket, now: float) -> Ticket:
        why = (
            f"The hold was lifted before the result, by {v.lifted_by}; Deskgate put it back "
            "(this desk enforces the gate until the result)."
        )
        wrote = False

        def write_gate(t: Ticket) -> Ticket:
            nonlocal wrote
            if not lifted(v, t):  # put back by someone meanwhile
                return t
            wrote = True
            return desk.gate(t, notes.gate(v, self.seal, why))

        ticket = self.write(desk, ticket, write_gate)
        if wrote:
            self.store.written(v, "gate", now)
            self.store.update(v.id, ticket=v.remember(ticket))
            log.info("gate restored")
        return ticket
