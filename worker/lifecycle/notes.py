"""What Deskgate writes in tickets: short internal notes an agent can act on.

Every note names the Incode session and the Deskgate verification, so the mapping can be rebuilt
from the ticket if Redis loses it. No note ever carries the link or a full email or phone.

Anyone who can write on a ticket can write text that looks like a gate note, so the gate note is
sealed: an HMAC, keyed by Deskgate's ``note_secret``, over the desk, the ticket, the reason and
every id the recovery would trust. ``read_gate`` returns nothing for a note whose seal does not
match. Final outcome notes are sealed too (over the desk, the ticket, the verification, the
requester and the outcome): once the verification's record has expired, the marker audit
(``worker.lifecycle.marker_audit``) believes a ``verified`` marker only with Deskgate's sealed
note for it (``sealed_outcome``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.secret_check import matches_any
from worker.lifecycle import FINAL, State
from worker.lifecycle.store import Verification

SIGN_OFF = "— Deskgate"
VERIFICATION_LINE = "Deskgate verification:"
GATE_HEADLINE = "Identity verification requested"
REVIEW_HEADLINE = "Identity verification needs MANUAL REVIEW"
SEAL_LINE = "Seal:"

WHEN = "%H:%M UTC on %Y-%m-%d"
_GATE = re.compile(
    r"\A" + GATE_HEADLINE + r" \((?P<reason>[^\n]*)\)\.\n"
    r".*?expires at (?P<when>\d\d:\d\d UTC on \d{4}-\d\d-\d\d)\..*?"
    r"^Incode session: (?P<session>[\w-]+)\n"
    r"Deskgate verification: (?P<verification>[0-9a-f]{24}) \(requester (?P<requester>[^)\n]*)\)\n"
    r"Seal: (?P<seal>[A-Za-z0-9_-]{43})\n",
    re.DOTALL | re.MULTILINE,
)
_VERIFICATION = re.compile(r"^Deskgate verification: (?P<verification>[0-9a-f]+) ", re.MULTILINE)
# The sealed ids that close an outcome note (nothing but the sign-off after them).
_SEALED_IDS = re.compile(
    r"^Deskgate verification: (?P<verification>[0-9a-f]{24}) \(requester (?P<requester>[^)\n]*)\)\n"
    r"Seal: (?P<seal>[A-Za-z0-9_-]{43})\n" + re.escape(SIGN_OFF) + r"\s*\Z",
    re.MULTILINE,
)


class Seal:
    """Signs and checks gate notes with Deskgate's note secrets (current first, then previous,
    so a rotation keeps the notes written before it readable)."""

    def __init__(self, secrets: list[str]) -> None:
        if not secrets or any(len(s) < 16 for s in secrets):
            raise ValueError("note secrets must be at least 16 characters")
        self._keys = [s.encode() for s in secrets]

    @staticmethod
    def _message(desk: str, ticket_id: str, record: GateRecord, when: str) -> bytes:
        parts = ("gate-v2", desk, ticket_id, record.verification, record.interview_id,
                 record.requester_id, record.reason, when)  # fmt: skip
        return "\x1f".join(parts).encode()

    def _mac(self, key: bytes, message: bytes) -> str:
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign_outcome(self, v: Verification) -> str:
        return self._mac(
            self._keys[0],
            self._outcome_message(v.desk, v.ticket_id, v.id, v.requester_id, v.state.value),
        )

    def valid_outcome(
        self, desk: str, ticket_id: str, vid: str, requester: str, state: str, seal: str
    ) -> bool:
        message = self._outcome_message(desk, ticket_id, vid, requester, state)
        return matches_any(seal, [self._mac(k, message) for k in self._keys])

    @staticmethod
    def _outcome_message(desk: str, ticket_id: str, vid: str, requester: str, state: str) -> bytes:
        return "\x1f".join(("outcome-v1", desk, ticket_id, vid, requester, state)).encode()

    def sign(self, desk: str, ticket_id: str, record: GateRecord, when: str) -> str:
        return self._mac(self._keys[0], self._message(desk, ticket_id, record, when))

    def valid(self, desk: str, ticket_id: str, record: GateRecord, when: str, seal: str) -> bool:
        message = self._message(desk, ticket_id, record, when)
        return matches_any(seal, [self._mac(k, message) for k in self._keys])


def when(epoch: float) -> str:
    """A moment as notes show it: "14:02 UTC on 2026-11-28"."""
    return datetime.fromtimestamp(epoch, UTC).strftime(WHEN)


def _ids(v: Verification, seal: str = "") -> str:
    session = f"Incode session: {v.interview_id}\n" if v.interview_id else ""
    sealed = f"{SEAL_LINE} {seal}\n" if seal else ""
    return f"{session}{VERIFICATION_LINE} {v.id} (requester {v.requester_id})\n{sealed}{SIGN_OFF}"


@dataclass(frozen=True)
class GateRecord:
    """What a gate note says, enough to pick a verification up again after Redis lost it."""

    verification: str
    interview_id: str
    requester_id: str
    expires_at: float
    reason: str  # what the agent asked to verify for: a recovered result applies to this only


def read_gate(text: str, seal: Seal, desk: str, ticket_id: str) -> GateRecord | None:
    """The ids in a gate note that ``gate()`` wrote for this desk's ticket; None for any other
    text, for a gate note of another ticket, and for one whose seal does not match."""
    found = _GATE.match(text.replace("\r\n", "\n"))
    if found is None:
        return None
    try:
        expires = datetime.strptime(found["when"], WHEN).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    record = GateRecord(
        found["verification"], found["session"], found["requester"], expires, found["reason"]
    )
    if not seal.valid(desk, ticket_id, record, found["when"], found["seal"]):
        return None
    return record


def verification_of(text: str) -> str | None:
    """The verification a Deskgate note names, if any."""
    found = _VERIFICATION.search(text)
    return found["verification"] if found else None


def sealed_outcome(text: str, seal: Seal, desk: str, ticket_id: str, state: str) -> str | None:
    """The requester an outcome note of ``state`` that ``outcome()`` wrote for this desk's
    ticket names; None for any other text and for a seal that does not match."""
    found = _SEALED_IDS.search(text.replace("\r\n", "\n"))
    if found is None:
        return None
    vid, requester = found["verification"], found["requester"]
    if not seal.valid_outcome(desk, ticket_id, vid, requester, state, found["seal"]):
        return None
    return requester


def is_open(text: str) -> bool:
    """A gate or manual-review note: the verification it names was still open when written."""
    return text.startswith((GATE_HEADLINE, REVIEW_HEADLINE))


def gate(v: Verification, seal: Seal, why: str = "") -> str:
    """The gate note; ``why`` (a sentence) says why the gate is written again (restored)."""
    expires = when(v.expires_at)
    record = GateRecord(v.id, v.interview_id, v.requester_id, v.expires_at, v.reason)
    return (
        f"{GATE_HEADLINE} ({v.reason}).\n"
        + (f"{why}\n" if why else "")
        + f"A verification link was sent to {v.destination} by {v.channel}; "
        f"it expires at {expires}.\n"
        "Do not act on this request until the result is added here.\n"
        + (f"{v.remark}\n" if v.remark else "")
        + _ids(v, seal.sign(v.desk, v.ticket_id, record, expires))
    )


def lifted(v: Verification) -> str:
    """What the outcome note says of a gate someone lifted before the result."""
    return (
        f"The hold was lifted (or the pending marker removed) before the result, by "
        f"{v.lifted_by}: anything done on this ticket meanwhile was done without a verified "
        "identity."
    )


def outcome(v: Verification, seal: Seal, offer: str = "") -> str:
    """``offer``: what a verified result lets the agent ask Deskgate to do
    (``worker.idp.actions``)."""
    checks = v.detail
    if v.state == State.VERIFIED:
        how = f" (Incode result: {v.result})" if v.result else ""
        # What is proven is that the employee of record passed, at their contact of record; not
        # that the caller on the line is that employee. So the work goes to that contact only.
        text = (
            f"Identity VERIFIED{how}: the employee of record completed Incode's identity check "
            f"through the link sent to {v.destination}.\n"
            f"Deliver the {v.reason} only through that employee's contact of record, never to "
            "the caller on the line or to a contact the caller gives."
        )
    elif v.state == State.FAILED:
        text = (
            "Identity verification FAILED: Incode could not confirm the requester's identity.\n"
            + (f"Checks that did not pass: {checks}.\n" if checks else "")
            + f"Do not proceed with the {v.reason}; follow your escalation procedure."
        )
    elif v.state == State.REVIEW:
        text = (
            f"{REVIEW_HEADLINE} in Incode"
            + (f" (checks flagged: {checks})" if checks else "")
            + ".\nThe ticket stays on hold; the final result will be added here."
        )
    elif v.state == State.EXPIRED and v.detail:  # the manual review never decided
        text = (
            f"Identity verification EXPIRED: {v.detail}.\n"
            f"Do not proceed with the {v.reason}. Flag the ticket again to send a new link."
        )
    elif v.state == State.EXPIRED:
        text = (
            f"Identity verification EXPIRED: no result by {when(v.expires_at)}.\n"
            f"Do not proceed with the {v.reason}. Flag the ticket again to send a new link."
        )
    else:
        text = (
            f"Identity verification could not be completed: {v.detail}.\n"
            f"Do not proceed with the {v.reason}. Fix this, then flag the ticket again."
        )
    if offer:
        text = f"{text}\n{offer}"
    if v.lifted_by and v.state != State.REVIEW:
        text += "\n" + lifted(v)
    return f"{text}\n{_ids(v, seal.sign_outcome(v) if v.state in FINAL else '')}"
