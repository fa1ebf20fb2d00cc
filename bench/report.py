"""Benchmark: ``deskgate report`` over a large audit trail: how fast
``worker.commands.report.build`` reads events and how much memory it keeps (tracemalloc's peak,
the events themselves streamed from a generator so only what the aggregation keeps is counted).

A year of one large desk: ``--verifications`` lifecycles (default 100,000) over 365 days, each
requested -> sent -> verified (80%), failed, expired or error, plus its two ticket writes: about
six events a verification. Run ``python -m bench.report`` (about a minute); the table goes into
docs/performance.md.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import now_utc, table, write_section
from worker.commands.report import build

SINCE = datetime(2025, 11, 28, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=365)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def trail(verifications: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Lifecycles one after another in time (each finishes before the next opens)."""
    rng = random.Random(seed)
    step = (UNTIL - SINCE) / verifications
    outcomes = ["verified"] * 8 + ["failed", "expired", "error"]
    for n in range(verifications):
        opened = SINCE + step * n
        took = timedelta(seconds=rng.randint(30, 3600))
        outcome = rng.choice(outcomes)
        base = {
            "schema": 1, "desk": "big_desk", "ticket": str(100000 + n),
            "verification": f"{n:032x}", "session": f"{n:024x}", "requester": f"u{n}",
            "reason": rng.choice(["mfa_reset", "account_unlock"]), "channel": "EMAIL",
            "destination": "j***@acme.test", "origin": "push", "detail": "",
            "started_at": _stamp(opened), "sent_at": _stamp(opened + timedelta(seconds=2)),
        }  # fmt: skip
        steps = [
            ("verification.requested", opened, "requested", ""),
            ("verification.sent", opened + timedelta(seconds=2), "sent", ""),
            ("ticket.written", opened + timedelta(seconds=2), "sent", "gate"),
            (f"verification.{outcome}", opened + took, outcome, "link_cap" * (outcome == "error")),
            ("ticket.written", opened + took, outcome, "outcome"),
        ]
        for i, (event, at, state, code) in enumerate(steps):
            yield {
                **base, "id": f"{n:028x}{i:04x}", "time": _stamp(at), "event": event,
                "state": state, "outcome": outcome if event.endswith(outcome) else "",
                "code": code, "state_at": _stamp(at),
            }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verifications", type=int, default=100_000)
    args = parser.parse_args()
    n = args.verifications
    events = list(trail(n))  # held in a list for the timing, so making them is not timed
    started = time.perf_counter()
    report = build(events, SINCE, UNTIL)
    seconds = time.perf_counter() - started
    assert report.totals.verifications == n
    count = len(events)
    del events
    tracemalloc.start()
    build(trail(n), SINCE, UNTIL)  # streamed: only what build() keeps is counted
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows = [
        ("verifications / events", f"{n:,} / {count:,}"),
        ("build(): events per second", f"{count / seconds:,.0f}"),
        ("build(): seconds for the year", f"{seconds:.1f}"),
        ("peak memory kept by build()", f"{peak / 2**20:.1f} MiB ({peak / n:.0f} bytes each)"),
    ]
    body = (
        f"### Report aggregation ({now_utc()})\n\n`python -m bench.report --verifications {n}`: "
        "a year of one desk, streamed from a generator.\n\n" + table(("figure", "value"), rows)
    )
    print(body)
    write_section("report", body)


if __name__ == "__main__":
    main()
