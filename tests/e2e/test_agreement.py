"""The three views of the same work agree: the worker's Prometheus counters, the audit trail and
``deskgate report`` count the same verifications and outcomes for a run of real lifecycles
(verified, failed, and an error for a requester Incode does not know) on the running stack."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, flagged_ticket
from tests.e2e.test_metrics import Samples, scrape
from worker import audit
from worker.commands.report.aggregate import build

pytestmark = pytest.mark.e2e

OUTCOMES = ("verified", "failed", "expired", "error")


def redis_now(stack: Stack) -> datetime:
    seconds, micros = stack.redis.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def delta(before: Samples, after: Samples, name: str, label: str) -> Counter[str]:
    """How much each value of ``label`` grew in ``name`` between the two scrapes."""
    grown: Counter[str] = Counter()
    for key, value in after.items():
        metric, labels = key
        if metric == name:
            grown[dict(labels)[label]] += int(value - before.get(key, 0))
    return +grown  # drop the values that did not grow


def test_metrics_audit_trail_and_report_count_the_same(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    idle = lambda: stack.worker_busy() == 0  # noqa: E731
    wait_for(idle, WAIT, "the worker to be idle before")
    since = redis_now(stack)
    before = scrape(stack.worker_metrics_url)

    other = employee.replace("@", ".failing@")  # a second employee: one session each
    stack.enrol(other)
    passed, passed_session = flagged_ticket(stack, desk, employee)
    failed, failed_session = flagged_ticket(stack, desk, other)
    stranger = desk.create_ticket("Mallory", "mallory.agree@acme.test", "unlock my account")
    desk.flag(stranger)
    stack.complete(passed_session["interviewId"], "pass")
    stack.complete(failed_session["interviewId"], "fail")
    for ticket, marker in ((passed, "verified"), (failed, "failed"), (stranger, "error")):
        wait_for(lambda: desk.view(ticket).marker == marker, WAIT, f"{marker} on {ticket}")  # noqa: B023 - called at once
    wait_for(idle, WAIT, "the worker to be idle after")
    # The outcome events are appended after the desk took the write: give the last one a moment.
    key = audit.stream_key(stack.options.key_prefix)
    wait_for(
        lambda: (
            sum(
                1
                for _, f in stack.redis.xrange(key, str(int(since.timestamp() * 1000)), "+")
                if f.get("event") == "ticket.written" and f.get("code") == "outcome"
            )
            >= 3
        ),
        WAIT,
        "the three outcome writes in the audit trail",
    )
    # The worker counts an event just after appending it: wait for the last one to be counted.
    after = wait_for(
        lambda: (
            sum(delta(before, s := scrape(stack.worker_metrics_url),
                      "deskgate_ticket_writes_total", "write").values()) >= 5 and s
        ),
        WAIT,
        "the worker's metrics to count the last write",
    )  # fmt: skip
    until = redis_now(stack) + timedelta(milliseconds=1)
    events = list(audit.read(stack.redis, stack.options.key_prefix, since, until))

    # The audit trail: what happened, one event each.
    kinds = Counter(e["event"] for e in events)
    assert kinds["verification.requested"] == 3, kinds
    finals = Counter(e["outcome"] for e in events if e["event"] == f"verification.{e['outcome']}")
    assert finals == Counter(verified=1, failed=1, error=1), finals

    # The metrics: the same numbers, counted by the worker as it recorded the events.
    started = delta(before, after, "deskgate_verifications_started_total", "origin")
    assert sum(started.values()) == kinds["verification.requested"], started
    finished = delta(before, after, "deskgate_verifications_finished_total", "outcome")
    assert finished == finals, finished
    written = delta(before, after, "deskgate_ticket_writes_total", "write")
    assert written == Counter(e["code"] for e in events if e["event"] == "ticket.written")

    # The report: built from the same events, the same totals.
    totals = build(events, since, until).totals
    assert totals.verifications == kinds["verification.requested"] + kinds.get(
        "verification.recovered", 0
    )
    assert {o: getattr(totals, o) for o in OUTCOMES if getattr(totals, o)} == dict(finals)
    assert totals.timed == finals["verified"]  # a time to verify for each one verified
