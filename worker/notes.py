"""What Deskgate writes in tickets: short internal notes an agent can act on.

Every note names the Incode session and the Deskgate verification, so the mapping can be rebuilt
from the ticket if Redis loses it. No note ever carries the link or a full email or phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.lifecycle import State
from worker.store import Verification

SIGN_OFF = "— Deskgate"
VERIFICATION_LINE = "Deskgate verification:"


WHEN = "%H:%M UTC on %Y-%m-%d"
_GATE = re.compile(
    r"expires at (?P<when>\d\d:\d\d UTC on \d{4}-\d\d-\d\d)\..*?"
    r"Incode session: (?P<session>[\w-]+)\s+"
    r"Deskgate verification: (?P<verification>[0-9a-f]+) \(requester (?P<requester>[^)]*)\)",
    re.DOTALL,
)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(WHEN)


def _ids(v: Verification) -> str:
    session = f"Incode session: {v.interview_id}\n" if v.interview_id else ""
    return f"{session}{VERIFICATION_LINE} {v.id} (requester {v.requester_id})\n{SIGN_OFF}"


@dataclass(frozen=True)
class GateRecord:
    """What a gate note says, enough to pick a verification up again after Redis lost it."""

    verification: str
    interview_id: str
    requester_id: str
    expires_at: float


def read_gate(text: str) -> GateRecord | None:
    """Parse a gate note written by ``gate()``; None for any other text."""
    found = _GATE.search(text)
    if found is None:
        return None
    expires = datetime.strptime(found["when"], WHEN).replace(tzinfo=UTC).timestamp()
    return GateRecord(found["verification"], found["session"], found["requester"], expires)


def gate(v: Verification) -> str:
    return (
        f"Identity verification requested ({v.reason}).\n"
        f"A verification link was sent to {v.destination} by {v.channel}; "
        f"it expires at {_when(v.expires_at)}.\n"
        "Do not act on this request until the result is added here.\n" + _ids(v)
    )


def outcome(v: Verification) -> str:
    checks = v.detail
    if v.state == State.VERIFIED:
        how = f" (Incode result: {v.result})" if v.result else ""
        text = (
            f"Identity VERIFIED{how}: Incode confirmed the requester's identity.\n"
            f"You may proceed with the {v.reason}."
        )
    elif v.state == State.FAILED:
        text = (
            "Identity verification FAILED: Incode could not confirm the requester's identity.\n"
            + (f"Checks that did not pass: {checks}.\n" if checks else "")
            + f"Do not proceed with the {v.reason}; follow your escalation procedure."
        )
    elif v.state == State.REVIEW:
        text = (
            "Identity verification needs MANUAL REVIEW in Incode"
            + (f" (checks flagged: {checks})" if checks else "")
            + ".\nThe ticket stays on hold; the final result will be added here."
        )
    elif v.state == State.EXPIRED:
        text = (
            f"Identity verification EXPIRED: no result by {_when(v.expires_at)}.\n"
            f"Do not proceed with the {v.reason}. Flag the ticket again to send a new link."
        )
    else:
        text = (
            f"Identity verification could not be completed: {v.detail}.\n"
            f"Do not proceed with the {v.reason}. Fix this, then flag the ticket again."
        )
    return f"{text}\n{_ids(v)}"
