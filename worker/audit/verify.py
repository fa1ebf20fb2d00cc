"""``deskgate audit verify``: walk the audit trail's hash chain and name its first broken link.

Exit 0 when every event from the trail's start (or ``--since``) up to the chain's head verifies;
1 with the first broken link's event id and reason; 2 for bad arguments. Progress goes to stderr
every ``PROGRESS_EVERY`` events, so a long trail shows it is moving.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

from redis import Redis

from config.settings import Settings
from worker import audit
from worker.audit.chain import Chain, Verifier, verify

PROGRESS_EVERY = 10_000


def describe(verifier: Verifier) -> str:
    """The verdict in one line, for the command and for ``deskgate report``."""
    if verifier.broken:
        return f"the audit trail does NOT verify: {verifier.broken}"
    before = (
        f" ({verifier.unsealed} earlier events from before the chain are not sealed)"
        if verifier.unsealed
        else ""
    )
    if not verifier.checked:
        return f"the audit trail holds no sealed events to verify{before}"
    start = _stamp(verifier.first_id)
    if verifier.trimmed:
        where = f"from {start}, where retention trimmed it (earlier events are gone, not broken)"
    elif verifier.from_start:
        where = f"from its first event ({start})"
    else:
        where = f"from {start}"
    return f"the audit trail verifies: {verifier.checked} events {where}{before}"


def _stamp(stream_id: str) -> str:
    """A stream id's time (the Redis server's clock when the event was appended)."""
    millis = int(stream_id.split("-")[0])
    return audit.rfc3339(millis / 1000)


def run(redis: Redis[str], settings: Settings, since: str | None, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    since_ms = None
    if since is not None:
        try:
            moment = audit.parse_moment(since, datetime.now(UTC))
        except ValueError as exc:
            print(f"deskgate audit verify: --since: {exc}", file=err)
            return 2
        since_ms = int(moment.timestamp() * 1000)
    shown = 0

    def progress(checked: int) -> None:
        nonlocal shown
        if checked - shown >= PROGRESS_EVERY:
            shown = checked
            print(f"deskgate audit verify: {checked} events checked", file=err)

    verifier = verify(
        redis, settings.key_prefix, Chain.of(settings), since_ms=since_ms, progress=progress
    )
    print(describe(verifier))
    return 1 if verifier.broken else 0
