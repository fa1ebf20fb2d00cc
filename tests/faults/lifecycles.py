"""What every fault scenario asserts about its tickets, and the moves that set tickets up.

The common promise (the reliability issue): every flagged ticket ends in the right final state,
with exactly one gate note and one outcome note, and no more links sent than the scenario allows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from worker.dispatch import START_VERIFICATION

GATE_NOTE = "Identity verification requested"
WAIT = 60.0  # generous: retries back off, and a timeout costs the client's 5 s


@dataclass(frozen=True)
class Case:
    """One flagged ticket and what must hold for it once the scenario is over."""

    desk: DeskDriver
    ticket: str
    employee: str
    final: str = "verified"  # the marker the ticket must end with
    links: int = 1  # the most Incode sessions (links) this employee may have received
    gated: bool = True  # a link went out, so a gate note must be there
    outcomes: int = 1  # outcome notes (a manual review adds one before the decision)


@dataclass
class Tally:
    """What a scenario's tickets show, summed: the counts docs/reliability.md reports."""

    tickets: int = 0
    correct: int = 0
    gate_notes: int = 0
    outcome_notes: int = 0
    links: int = 0
    by_marker: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, object]:
        return {
            "tickets": self.tickets,
            "correct": self.correct,
            "gate_notes": self.gate_notes,
            "outcome_notes": self.outcome_notes,
            "links": self.links,
            "final": dict(sorted(self.by_marker.items())),
        }


def open_flagged(desk: DeskDriver, employees: Iterable[str], *, announce: bool = True) -> list[str]:
    """One ticket per employee, flagged. With ``announce`` off the push is switched off first,
    so nothing tells Deskgate until the test does (``start``); it is switched back on after."""
    if not announce:
        desk.set_push(False)
    try:
        tickets = []
        for email in employees:
            ticket = desk.create_ticket(f"Employee {email.split('@')[0]}", email, "MFA reset")
            desk.flag(ticket)
            tickets.append(ticket)
    finally:
        desk.set_push(True)
    return tickets


def start(stack: Stack, desk: DeskDriver, tickets: Iterable[str]) -> None:
    """What the desk's push (or the poller) does: hand each ticket to the worker."""
    for ticket in tickets:
        stack.send_task(START_VERIFICATION, desk.desk, ticket)


def marked(desk: DeskDriver, ticket: str, marker: str) -> bool:
    return desk.view(ticket).marker == marker


def wait_markers(desk: DeskDriver, tickets: Iterable[str], marker: str, timeout: float) -> None:
    for ticket in tickets:
        wait_for(partial(marked, desk, ticket, marker), timeout, f"{marker} on {ticket}")


def session_of(desk: DeskDriver, ticket: str) -> str:
    """The Incode session the ticket's gate note names (the link the employee would open)."""
    gate = next(n for n in desk.notes(ticket) if GATE_NOTE in n)
    found = re.search(r"Incode session: (\w+)", gate)
    assert found, gate
    return found[1]


def quiet(stack: Stack, seconds: float = 0.5, timeout: float = WAIT) -> None:
    """Wait until the worker holds no task (none queued, running or waiting for a retry), then
    a moment more: a stray duplicate gets its chance to (wrongly) act before we assert."""
    wait_for(lambda: stack.worker_busy() == 0, timeout, "the worker to be idle", every=0.2)
    time.sleep(seconds)


def inside_retry_after(
    calls: list[dict[str, Any]], retry_after: float, slack: float
) -> tuple[int, list[tuple[float, float]]]:
    """Deskgate's calls to a desk against the desk's 429s: how many 429s were served, and each
    call that arrived within ``retry_after`` seconds of a 429's answer, as (429 answered at, call
    arrived at). A call arriving within ``slack`` was decided on before the 429 could be heard
    (the worker's other threads learn of it through Redis a few milliseconds later)."""
    limited = [float(c["at"]) for c in calls if c["status"] == 429]
    early = [
        (t, float(c["started"]))
        for t in limited
        for c in calls
        if t + slack < float(c["started"]) < t + retry_after
    ]
    return len(limited), early


def retries(stack: Stack, since: int) -> dict[str, int]:
    """The worker's retries after its ``since``-th "will retry" line, by cause."""
    causes = {
        "rate limited": "429",
        "timed out": "timeout",
        "HTTP 5": "5xx",
        "kept changing": "409",
    }
    counts: dict[str, int] = {}
    for record in stack.logged("worker", "will retry")[since:]:
        error = str(record.get("error", ""))
        cause = next((c for text, c in causes.items() if text in error), "other")
        counts[cause] = counts.get(cause, 0) + 1
    return dict(sorted(counts.items()))


def check(stack: Stack, cases: list[Case], timeout: float = WAIT) -> Tally:
    """Wait for every case's final marker, let the worker go quiet, then assert the promise."""
    for case in cases:
        wait_markers(case.desk, [case.ticket], case.final, timeout)
    quiet(stack)
    tally = Tally()
    for case in cases:
        notes = case.desk.notes(case.ticket)
        gates = [n for n in notes if GATE_NOTE in n]
        outcomes = [n for n in notes if GATE_NOTE not in n]
        links = len(stack.sessions(case.employee))
        marker = case.desk.view(case.ticket).marker
        where = f"{case.desk.system} ticket {case.ticket}"
        assert marker == case.final, f"{where}: ends {marker}, not {case.final}"
        assert len(gates) == (1 if case.gated else 0), f"{where}: {len(gates)} gate notes"
        if gates:
            assert notes[0] == gates[0], f"{where}: the gate note is not the first"
        assert len(outcomes) == case.outcomes, f"{where}: {len(outcomes)} outcome notes"
        assert links <= case.links, f"{where}: {links} links sent, at most {case.links} allowed"
        assert links >= (1 if case.gated else 0), f"{where}: gated without a link"
        tally.tickets += 1
        tally.correct += 1
        tally.gate_notes += len(gates)
        tally.outcome_notes += len(outcomes)
        tally.links += links
        tally.by_marker[marker or "none"] = tally.by_marker.get(marker or "none", 0) + 1
    return tally
