"""Reading each IdP's audit log for bypass detection (``worker.idp.bypass`` judges what is read).

One poll per IdP per ``idp_poll_interval_seconds`` (beat), under a lock so two workers never
read one IdP at once. The IdP's own cursor is kept in Redis and saved after the events it
covers were handled, so a restart resumes where the last poll ended: no gap. Event ids already
handled are kept a while (``SEEN_SECONDS``, well past any overlap a kind reads again, such as
Entra's ``log_overlap_seconds``), so nothing is reported twice: no double. A ``RateLimited``
answer holds every worker back (``worker.lifecycle.pace``) and the task is retried after the wait.

Keys (``p`` is the store's prefix): ``p:idplog:<idp>:cursor`` (string), ``p:idplog:<idp>:seen``
(sorted set of event ids by when they were handled, trimmed by age), the poll's lock
``p:lock:idplog:<idp>``, the cool-down ``p:pace:idp:<idp>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from connectors.http import RateLimited
from connectors.identity_provider import IdpEvent
from worker.idp.bypass import Detector, rules_for
from worker.idp.ledger import IdpLedger
from worker.lifecycle.pace import Pace
from worker.runtime import Runtime

log = structlog.get_logger("deskgate.idp_watch")

SEEN_SECONDS = 2 * 86400  # longer than any overlap a kind reads again (Entra's is at most a day)
LOCK_SECONDS = 300  # a poll that takes longer (a crashed worker) is taken over after this


@dataclass(frozen=True)
class PollResult:
    read: int  # events the IdP returned
    new: int  # of which not handled before
    alerts: int  # bypasses and break-glass reports among them


class Watcher:
    def __init__(self, detector: Detector, pace: Pace, clock: Callable[[], float]) -> None:
        self.detector = detector
        self.idp = detector.idp
        self.name = detector.name
        self.store = detector.store
        self.redis = detector.store.redis
        self.pace = pace
        self.clock = clock
        base = f"{self.store.prefix}:idplog:{self.name}"
        self.cursor_key, self.seen_key = f"{base}:cursor", f"{base}:seen"

    def poll(self) -> PollResult | None:
        """Read what the IdP logged since the last poll and judge each new event; None when
        another worker holds this IdP's poll."""
        with self.store.lock(f"idplog:{self.name}", LOCK_SECONDS) as held:
            if not held:
                log.info("idp poll skipped: another worker is reading this log", idp=self.name)
                return None
            return self._poll()

    def _poll(self) -> PollResult:
        pace = f"idp:{self.name}"
        wait = self.pace.remaining(pace)
        if wait > 0:
            raise RateLimited(self.name, wait)
        try:
            return self._read()
        except RateLimited as exc:  # the log read, or a user re-read while judging
            self.pace.hold(pace, exc.retry_after)
            raise

    def _read(self) -> PollResult:
        events, cursor = self.idp.read_log(self.redis.get(self.cursor_key))
        now = self.clock()
        fresh = self._unseen(events)
        alerts = 0
        for event in fresh:
            found = self.detector.handle(event, now)
            alerts += found is not None and found.verdict in ("bypass", "break_glass")
            # Marked one by one: a poll cut short (a worker killed, the IdP throttling the user
            # read) resumes at the first unhandled event, and repeats none.
            self.redis.zadd(self.seen_key, {event.id: now})
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.cursor_key, cursor)
        pipe.zremrangebyscore(self.seen_key, "-inf", f"({now - SEEN_SECONDS}")
        pipe.execute()
        if fresh:
            log.info("idp log read", idp=self.name, read=len(events), new=len(fresh), alerts=alerts)
        return PollResult(len(events), len(fresh), alerts)

    def _unseen(self, events: list[IdpEvent]) -> list[IdpEvent]:
        """``events`` less those handled before (and less repeats within the read)."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return []
        ids = [e.id for e in unique]
        scores = self.redis.zmscore(self.seen_key, ids)  # type: ignore[no-untyped-call]
        return [e for e, score in zip(unique, scores, strict=True) if score is None]


def watcher(rt: Runtime, idp: str, clock: Callable[[], float]) -> Watcher:
    """The watcher of the configured IdP ``idp``, from the process's runtime."""
    settings = rt.settings
    detector = Detector(
        idp,
        rt.idps[idp],
        rt.store,
        IdpLedger(rt.redis, settings.key_prefix, settings.retention_days * 86400),
        rules_for(settings, idp),
        rt.desks,
    )
    return Watcher(detector, Pace(rt.redis, settings.key_prefix), clock)
