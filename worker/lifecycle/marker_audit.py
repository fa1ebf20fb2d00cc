"""The marker audit: a ``verified`` marker on a ticket that Deskgate cannot prove it wrote.

Anyone who may edit a ticket can add the ``verified`` tag (or set the status field) by hand, and
an agent can change the requester after a verified outcome: the marker then vouches for someone
who was never verified. A periodic task per desk reads the tickets whose verified marker changed
since its last run (the desk's search, a durable cursor: a bounded number of pages a run) and
believes a marker only when

- Deskgate's record of the verification it last wrote on the ticket (or the one still writing
  its outcome there) ended ``verified``, for the ticket's requester now; or, once that record
  has expired (``retention_days``),
- the verification Deskgate's own user last wrote about on the ticket has an outcome note for
  ``verified``, sealed with ``note_secret`` for this desk, this ticket and the ticket's
  requester now.

Anything else is overturned: the marker becomes ``error`` (one conditional write, with a note
saying why) and the audit trail gets ``ticket.marker_overturned`` (code ``marker_forged`` or
``requester_changed_after``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import structlog

from connectors.ticketing import Desk, Ticket
from worker.lifecycle import State, notes
from worker.lifecycle.store import Store, Verification

log = structlog.get_logger("deskgate.marker_audit")

CHECKED = State.VERIFIED.value  # the marker that lets work proceed: the one worth forging
FORGED = (
    "this ticket carries the verified marker, but Deskgate has no record and no sealed note of "
    "a verification that ended verified on it: someone set the marker by hand"
)
REQUESTER_CHANGED = (
    "this ticket's requester changed after Deskgate wrote its verified outcome: that result "
    "belongs to the previous requester"
)

Write = Callable[[Desk, Ticket, Callable[[Ticket], Ticket]], Ticket]


class MarkerAudit:
    def __init__(self, store: Store, seal: notes.Seal, write: Write) -> None:
        self.store = store
        self.seal = seal
        self.write = write  # the flow's conditional write, re-reading on a 409

    def run(self, desk_name: str, desk: Desk, now: float) -> int:
        """One bounded scan of ``desk``; returns how many markers it overturned."""
        scan = f"{desk_name}:marked"
        found, cursor = desk.find_marked(CHECKED, self.store.cursor(scan))
        overturned = 0
        for ticket_id in found:
            ticket = desk.get_ticket(ticket_id)
            if ticket is None or ticket.marker != CHECKED or not ticket.writable:
                continue
            code, v = self.judge(desk_name, desk, ticket)
            if code:
                overturned += self._overturn(desk_name, desk, ticket, code, v, now)
        self.store.set_cursor(scan, cursor or None)
        if overturned:
            log.warning("marker audit overturned verified markers", count=overturned)
        return overturned

    def judge(self, desk_name: str, desk: Desk, ticket: Ticket) -> tuple[str, Verification | None]:
        """ "" for a marker Deskgate wrote for the ticket's requester now, else why not (an
        audit code), with the verification the marker claims to be, if recorded."""
        recorded = [
            v
            for v in (
                self.store.open_for(desk_name, ticket.id),
                self.store.marked(desk_name, ticket.id),
            )
            if v is not None
        ]
        latest: list[str] = []
        if not recorded:  # written before the ``marked`` index existed, or the records expired
            latest = _latest_verification(desk.own_notes(ticket, notes.VERIFICATION_LINE))
            named = self.store.get(notes.verification_of(latest[0]) or "-") if latest else None
            if named is not None and (named.desk, named.ticket_id) == (desk_name, ticket.id):
                recorded = [named]
        if not recorded:
            sealed = (
                notes.sealed_outcome(n, self.seal, desk_name, ticket.id, CHECKED) for n in latest
            )
            requester = next((r for r in sealed if r is not None), None)
            if requester is None:
                return "marker_forged", None
            return _for_requester_now(requester, ticket), None
        verified = next((v for v in recorded if v.state == State.VERIFIED), None)
        if verified is None:  # Deskgate's last outcome on this ticket was not verified
            return "marker_forged", recorded[0]
        return _for_requester_now(verified.requester_id, ticket), verified

    def _overturn(
        self, desk_name: str, desk: Desk, ticket: Ticket, code: str, v: Verification | None,
        now: float,
    ) -> int:  # fmt: skip
        why = FORGED if code == "marker_forged" else REQUESTER_CHANGED
        note = (
            f"Identity verification marker OVERTURNED: {why}.\n"
            "The marker is set to error. Do not proceed on the strength of it; flag the ticket "
            f"again to verify the requester.\n{notes.SIGN_OFF}"
        )
        wrote = False

        def overturn(t: Ticket) -> Ticket:
            nonlocal wrote
            if t.marker != CHECKED:  # changed meanwhile: the next run looks again
                return t
            wrote = True
            return desk.record(t, State.ERROR.value, note, release=False)

        self.write(desk, ticket, overturn)
        if not wrote:
            return 0
        record = asdict(v) if v is not None else {"desk": desk_name}
        record.update(
            ticket_display=ticket.display_id,
            requester_id=ticket.requester_id or "",
            state=State.ERROR.value,
            detail=why,
        )
        self.store.ticket_event("ticket.marker_overturned", code, now, record)
        log.warning("verified marker overturned", why=code, ticket=ticket.display_id)
        return 1


def _for_requester_now(verified_requester: str, ticket: Ticket) -> str:
    return "" if verified_requester == (ticket.requester_id or "") else "requester_changed_after"


def _latest_verification(found: list[str]) -> list[str]:
    """Deskgate's notes (newest first) about the verification its newest note names: its gate
    note and its outcome may carry the same second (ServiceNow's journal), so which of the two
    the desk lists first cannot decide; a later verification's note does."""
    newest = notes.verification_of(found[0]) if found else None
    return [n for n in found if newest is not None and notes.verification_of(n) == newest]
