"""The verification lifecycle: states and the transitions allowed between them.

``requested → sent → (verified | failed | review | expired | error)``; ``review → (verified |
failed | expired)`` (expired: no decision within the review timeout); ``requested → error`` when
the ticket cannot be verified at all. One exception: a result
(verified, failed, review) not yet written is overturned to error when the write finds that the
ticket's requester changed after the link went out. Everything that moves a verification goes
through ``worker.lifecycle.store``, which applies these rules atomically in Redis.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    REQUESTED = "requested"  # recorded, Incode not yet asked
    SENT = "sent"  # Incode sent the link; the ticket is gated
    VERIFIED = "verified"
    FAILED = "failed"
    REVIEW = "review"  # Incode wants a person to look; a final result follows
    EXPIRED = "expired"  # no result before the link expired
    ERROR = "error"  # cannot be verified as asked; the ticket says why


TRANSITIONS: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.SENT, State.ERROR}),
    State.SENT: frozenset({State.VERIFIED, State.FAILED, State.REVIEW, State.EXPIRED, State.ERROR}),
    State.REVIEW: frozenset({State.VERIFIED, State.FAILED, State.EXPIRED}),
}

OPEN = frozenset({State.REQUESTED, State.SENT, State.REVIEW})
FINAL = frozenset(State) - OPEN


def sources(target: State) -> frozenset[State]:
    """The states from which ``target`` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
