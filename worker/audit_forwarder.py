"""Forwarding the audit trail to a SIEM, at least once (docs/audit.md, "Forwarding to a SIEM").

Every worker process runs one forwarder thread (``start``) when ``audit_sink`` is configured.
They share a Redis consumer group on the audit stream, so each event goes to one of them, and an
event is acknowledged (XACK) only after the sink answered 2xx. While the sink is down nothing is
dropped: the events wait in the stream, the batch is sent again after a backoff that doubles up
to ``retry_max_seconds``, and a forwarder that died with a batch in hand leaves it pending,
for another one to claim (XAUTOCLAIM) once it has been idle ``CLAIM_IDLE_MS``. The stream's
retention is the only limit: a sink down for longer than ``audit_retention_days`` (or past
``audit_max_events``) loses what was trimmed, and ``trimmed_unsent`` counts it.

Order: one forwarder sends in stream order, and a failed batch is sent again before anything
newer. With several workers, batches (and a claimed batch) may arrive out of order: a SIEM
orders by ``time``, and duplicates carry the same ``id``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from connectors.http import ApiError
from worker import audit

log = structlog.get_logger("deskgate.audit.forwarder")

GROUP = "siem"
CLAIM_IDLE_MS = 60_000  # a batch pending this long belongs to a forwarder that died
BLOCK_MS = 1000  # how long one read waits for new events
FIRST_BACKOFF = 1.0
BATCH_REFUSED = frozenset({400, 413, 422})  # the sink's "this content is wrong"
REFUSALS = 5  # sends of one batch refused that way before it is set aside

Send = Callable[[Sequence[dict[str, Any]]], None]
Entries = list[tuple[str, dict[str, str] | None]]


def stats_key(prefix: str) -> str:
    return f"{audit.stream_key(prefix)}:sink"


class Forwarder:
    def __init__(
        self,
        redis: Redis[str],
        prefix: str,
        send: Send,
        *,
        batch: int = 100,
        retry_max: float = 30.0,
        consumer: str | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.redis = redis
        self.key = audit.stream_key(prefix)
        self.stats = stats_key(prefix)
        self.send = send
        self.batch = batch
        self.retry_max = retry_max
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self._grouped = False

    def _group(self) -> None:
        if self._grouped:
            return
        try:  # from the stream's start: a new sink receives what the stream still holds
            self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True

    def _next(self, block_ms: int | None) -> Entries:
        """This forwarder's own unacknowledged batch first (a failed send goes again, before
        anything newer), then a dead forwarder's, then new events."""
        mine = self.redis.xreadgroup(GROUP, self.consumer, {self.key: "0"}, count=self.batch)
        if mine and mine[0][1]:
            return list(mine[0][1])
        claimed = self.redis.xautoclaim(
            self.key, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        if claimed[1]:
            log.warning("claimed audit events another forwarder left", count=len(claimed[1]))
            return list(claimed[1])
        new = self.redis.xreadgroup(
            GROUP, self.consumer, {self.key: ">"}, count=self.batch, block=block_ms
        )
        return list(new[0][1]) if new else []

    def step(self, block_ms: int | None = BLOCK_MS) -> int:
        """Send one batch; returns how many events the sink took (0: nothing to send). Raises
        ``ApiError`` when the sink did not answer 2xx: the batch stays pending."""
        self._group()
        entries = self._next(block_ms)
        if not entries:
            return 0
        events = [audit.event_of(fields) for _, fields in entries if fields]
        gone = len(entries) - len(events)  # trimmed by retention before they were sent
        if events:
            try:
                self.send(events)
            except ApiError as exc:
                self.redis.hincrby(self.stats, "failures", 1)
                self.redis.hset(self.stats, "last_error", str(exc)[:200])
                if self._refused_for_good(exc, entries[0][0]):
                    self._set_aside([entry_id for entry_id, _ in entries], exc)
                    return 0
                raise
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *ids)
        pipe.hincrby(self.stats, "forwarded", len(events))
        if gone:
            pipe.hincrby(self.stats, "trimmed_unsent", gone)
        pipe.execute()
        return len(events)

    def _refused_for_good(self, exc: ApiError, first: str) -> bool:
        """The sink said this batch itself is wrong (400, 413, 422: not a credential, a URL or
        an outage, which fixing the configuration or waiting cures) and has said so
        ``REFUSALS`` times: sending it again would hold back every event behind it for ever."""
        if exc.status not in BATCH_REFUSED:
            return False
        [pending] = self.redis.xpending_range(self.key, GROUP, min=first, max=first, count=1)
        return int(pending["times_delivered"]) >= REFUSALS

    def _set_aside(self, ids: list[str], exc: ApiError) -> None:
        """Stop sending a batch the sink refuses for good. The events stay in the audit trail
        (``deskgate audit export`` has them); the ids are logged and counted for the operator."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *ids)
        pipe.hincrby(self.stats, "set_aside", len(ids))
        pipe.hset(self.stats, "last_set_aside", f"{ids[0]}..{ids[-1]}")
        pipe.execute()
        log.error("the SIEM refuses these audit events for good; set aside, still in the trail",
                  first=ids[0], last=ids[-1], count=len(ids), status=exc.status)  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set, backing off while the sink (or Redis) fails."""
        backoff = 0.0
        while not stop.is_set():
            try:
                self.step()
                backoff = 0.0
            except (ApiError, RedisError) as exc:
                backoff = min(max(backoff * 2, FIRST_BACKOFF), self.retry_max)
                log.warning("audit sink failed; will send again", error=str(exc),
                            retry_in_seconds=backoff)  # fmt: skip
                stop.wait(backoff)
            except Exception:  # a bug must not end forwarding until the worker restarts
                backoff = min(max(backoff * 2, FIRST_BACKOFF), self.retry_max)
                log.exception("audit forwarder step failed; will try again",
                              retry_in_seconds=backoff)  # fmt: skip
                stop.wait(backoff)


def status(redis: Redis[str], prefix: str, now: float | None = None) -> dict[str, float]:
    """The forwarding's figures, for metrics: ``lag_seconds`` (age of the oldest event not yet
    acknowledged by the sink, 0 when all are), ``unsent`` (events not yet acknowledged),
    ``failures_total`` (sends the sink did not take), ``forwarded_total``, ``trimmed_unsent``
    (events retention removed before they were sent) and ``events`` (in the stream now)."""
    now = time.time() if now is None else now
    key = audit.stream_key(prefix)
    stats = redis.hgetall(stats_key(prefix))
    try:
        groups = {g["name"]: g for g in redis.xinfo_groups(key)}  # type: ignore[no-untyped-call]
    except ResponseError:  # no stream yet
        groups = {}
    group = groups.get(GROUP)
    oldest: str | None = None
    unsent = 0
    if group is None:
        first = redis.xrange(key, count=1)
        oldest = first[0][0] if first else None
        unsent = int(redis.xlen(key))
    else:
        if group["pending"]:
            oldest = redis.xpending(key, GROUP)["min"]  # type: ignore[no-untyped-call]
        undelivered = redis.xrange(key, "(" + group["last-delivered-id"], "+", count=1)
        if undelivered and oldest is None:
            oldest = undelivered[0][0]
        lag = group.get("lag")
        unsent = int(group["pending"]) + (int(lag) if lag is not None else 0)
    lag_seconds = max(0.0, now - int(oldest.split("-")[0]) / 1000) if oldest else 0.0
    return {
        "lag_seconds": lag_seconds,
        "unsent": float(unsent),
        "failures_total": float(stats.get("failures", 0)),
        "forwarded_total": float(stats.get("forwarded", 0)),
        "trimmed_unsent": float(stats.get("trimmed_unsent", 0)),
        "set_aside_total": float(stats.get("set_aside", 0)),
        "events": float(redis.xlen(key)),
    }


def start(redis: Redis[str], prefix: str, send: Send, **options: Any) -> Callable[[], None]:
    """Run a ``Forwarder`` in a daemon thread; returns the function that stops it."""
    stop = threading.Event()
    forwarder = Forwarder(redis, prefix, send, **options)
    thread = threading.Thread(
        target=forwarder.run, args=(stop,), name="audit-forwarder", daemon=True
    )
    thread.start()
    log.info("audit forwarder started", consumer=forwarder.consumer)

    def halt() -> None:
        stop.set()
        thread.join(timeout=BLOCK_MS / 1000 + 5)

    return halt
