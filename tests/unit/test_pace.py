"""A desk's cool-down after a 429: every caller waits it out, not only the one that was told."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from connectors.http import RateLimited
from connectors.ticketing import Person, Ticket
from worker.pace import Pace, PacedDesk

TICKET = Ticket("1", "#1", "7", "MFA reset", None, True, True, "open", "v1")


class Desk:
    """A desk that answers reads, or 429 with ``retry_after`` while it is set."""

    name = "acme"

    def __init__(self) -> None:
        self.calls = 0
        self.retry_after: float | None = None

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        self.calls += 1
        if self.retry_after is not None:
            raise RateLimited("zendesk", self.retry_after)
        return TICKET

    # The rest of the Desk protocol, unused here.
    def find_flagged(self, cursor: str | None, *, gated: bool) -> tuple[list[str], str | None]:
        return [], None

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        return []

    def changed_at(self, person: Person, field: str) -> float | None:
        return None

    def get_requester(self, ticket: Ticket) -> Person | None:
        return None

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        return ticket

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        return ticket

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        return None

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        return ticket

    def close(self) -> None:
        pass


def test_given_a_429_when_any_caller_calls_then_it_waits_without_calling(
    redis: Redis[str],
) -> None:
    desk = Desk()
    one, other = (PacedDesk(desk, Pace(redis, "dgtest")) for _ in range(2))  # two workers
    desk.retry_after = 2.0
    with pytest.raises(RateLimited):
        one.get_ticket("1")
    desk.retry_after = None

    with pytest.raises(RateLimited) as told:
        other.get_ticket("1")
    assert desk.calls == 1  # the second caller never reached the desk
    assert 1.5 < told.value.retry_after <= 2.0


def test_given_the_cool_down_is_over_then_calls_go_through(redis: Redis[str]) -> None:
    desk, pace = Desk(), Pace(redis, "dgtest")
    pace.hold("acme", 0.2)
    with pytest.raises(RateLimited):
        PacedDesk(desk, pace).get_ticket("1")
    time.sleep(0.3)
    assert PacedDesk(desk, pace).get_ticket("1") == TICKET
    assert pace.remaining("acme") == 0.0


def test_a_shorter_wait_never_cuts_a_longer_one(redis: Redis[str]) -> None:
    pace = Pace(redis, "dgtest")
    pace.hold("acme", 5)
    pace.hold("acme", 1)
    assert pace.remaining("acme") > 4
    assert pace.remaining("other-desk") == 0.0
