"""Forwarding the audit trail to a SIEM, at least once (docs/audit.md, "Forwarding to a SIEM").

Every worker process runs one forwarder thread (``start``) when ``audit_sink`` is configured.
They share a Redis consumer group on the audit stream, so each event goes to one of them, and an
event is acknowledged (XACK) only after the sink answered 2xx. While the sink is down nothing is
dropped: the events wait in the stream, the batch is sent again after a backoff that doubles up
to ``retry_max_seconds``, and a forwarder that died with a batch in hand leaves it pending,
for another one to claim (XAUTOCLAIM) once it has been idle ``CLAIM_IDLE_MS``. The stream's
retention is the only limit: a sink down for longer than ``audit_retention_days`` (or past
``audit_max_events``) loses what was trimmed, and ``trimmed_unsent`` counts it.

Refusals: a batch the sink refuses as content is split until the refused event is alone; only an
event refused while its neighbours are taken is set aside (acknowledged, listed for ``deskgate
audit resend``). A sink that refuses everything, or says its own set-up is wrong (HEC's index or
channel codes, a token, a URL), takes nothing: the batch stays pending with the usual backoff,
and ``refusing`` is set for the alert until it takes events again.

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

from connectors.audit_sink import SYSTEM, ContentRefused, Misconfigured
from connectors.http import ApiError, Retriable
from worker import audit

log = structlog.get_logger("deskgate.audit.forwarder")

GROUP = "siem"
CLAIM_IDLE_MS = 60_000  # a batch pending this long belongs to a forwarder that died
BLOCK_MS = 1000  # how long one read waits for new events
FIRST_BACKOFF = 1.0

Send = Callable[[Sequence[dict[str, Any]]], None]
Entries = list[tuple[str, dict[str, str] | None]]
Batch = list[tuple[str, dict[str, Any]]]  # (stream id, event)
Taken = Callable[[list[str]], None]


def stats_key(prefix: str) -> str:
    return f"{audit.stream_key(prefix)}:sink"


def aside_key(prefix: str) -> str:
    """The stream ids of events set aside (a sorted set, scored by the id's milliseconds), for
    ``deskgate audit resend``. Bounded by the stream: ids older than its oldest entry go."""
    return f"{stats_key(prefix)}:aside"


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


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
        self.aside = aside_key(prefix)
        self._send = send
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
        anything newer), then a dead forwarder's, then new events. A short batch of its own is
        topped up with new events, so an event refused alone gets neighbours to compare with."""
        mine = self.redis.xreadgroup(GROUP, self.consumer, {self.key: "0"}, count=self.batch)
        if mine and mine[0][1]:
            held = list(mine[0][1])
            if len(held) < self.batch:
                more = self.redis.xreadgroup(
                    GROUP, self.consumer, {self.key: ">"}, count=self.batch - len(held)
                )
                held += list(more[0][1]) if more else []
            return held
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
        ``ApiError`` when a send fails before the batch is settled: what the sink did not take
        stays pending."""
        self._group()
        entries = self._next(block_ms)
        if not entries:
            return 0
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # trimmed by retention before they were sent: nothing left to send
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.key, GROUP, *gone)
            pipe.hincrby(self.stats, "trimmed_unsent", len(gone))
            pipe.execute()
        held = [(entry_id, audit.event_of(fields)) for entry_id, fields in entries if fields]
        if not held:
            return 0
        taken: list[str] = []

        def acknowledge(ids: list[str]) -> None:
            self._took(ids, acknowledge=True)
            taken.extend(ids)

        try:
            refused = self.deliver(held, acknowledge)
        except ApiError as exc:
            if not isinstance(exc, Retriable):  # not an outage: the receiver's set-up
                self.redis.hset(self.stats, "refusing", exc.reason[:200])
            raise
        if refused:
            self._set_aside(refused)
        return len(taken)

    def deliver(self, batch: Batch, taken: Taken) -> list[str]:
        """Send ``batch``; ``taken`` gets the ids of each part the sink took, as it takes them.
        Returns the ids of the events refused as content while others were taken: the only
        events ever set aside. Raises ``ApiError`` when the sink takes nothing; a refusal of
        every part, or of the one event and of the probe too, as ``Misconfigured``."""
        try:
            self.send([event for _, event in batch])
        except ContentRefused as exc:
            return self._isolate(batch, exc, taken)
        taken([entry_id for entry_id, _ in batch])
        return []

    def _isolate(self, batch: Batch, exc: ContentRefused, taken: Taken) -> list[str]:
        """First send the last event the sink took again (a duplicate, the same id): refused
        too, it is the receiver, not this batch. Then split the batch in halves, and each
        refused half again, down to single events. An event refused alone while a part of its
        batch was taken (or, alone in its batch, while the probe was taken) is poison; when no
        part was taken, the refusal is the receiver's, whatever its answer says."""
        probe = self._probe()
        if probe is False:
            raise Misconfigured(
                SYSTEM, f"refuses the batch and the last event it took ({exc.reason})", exc.status
            )
        if len(batch) == 1:
            if probe is None:  # nothing to compare with yet: held until neighbours come
                raise Misconfigured(
                    SYSTEM, f"refuses the one event it was sent ({exc.reason})", exc.status
                )
            return [batch[0][0]]
        refused: list[str] = []
        took = 0

        def split(part: Batch) -> None:
            nonlocal took
            if len(part) == 1:
                refused.append(part[0][0])
                return
            middle = len(part) // 2
            for half in (part[:middle], part[middle:]):
                try:
                    self.send([event for _, event in half])
                except ContentRefused:
                    split(half)
                    continue
                taken([entry_id for entry_id, _ in half])
                took += len(half)

        split(batch)
        if not took:
            raise Misconfigured(
                SYSTEM, f"refuses every event as content ({exc.reason}): taken as its own "
                "configuration, nothing set aside", exc.status,
            )  # fmt: skip
        return refused

    def _probe(self) -> bool | None:
        """Does the sink still take the last event it took? None when no such event is left in
        the stream to try (none was ever taken, or retention trimmed it)."""
        last = self.redis.hget(self.stats, "last_forwarded")
        found = self.redis.xrange(self.key, last, last) if last else []
        if not found:
            return None
        try:
            self.send([audit.event_of(found[0][1])])
        except ContentRefused:
            return False
        return True

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """One request to the sink; a refusal is counted and kept for ``sink-status``."""
        try:
            self._send(events)
        except ApiError as exc:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.stats, "failures", 1)
            pipe.hset(self.stats, "last_error", str(exc)[:200])
            pipe.execute()
            raise

    def _took(self, ids: list[str], *, acknowledge: bool = False) -> None:
        pipe = self.redis.pipeline(transaction=False)
        if acknowledge:
            pipe.xack(self.key, GROUP, *ids)
        pipe.hincrby(self.stats, "forwarded", len(ids))
        pipe.hset(self.stats, "last_forwarded", max(ids, key=_order))
        pipe.hdel(self.stats, "refusing")  # it takes events: its set-up is fine
        pipe.execute()

    def _set_aside(self, ids: list[str]) -> None:
        """Stop sending events the sink refuses while it takes their neighbours. They stay in
        the audit trail (``deskgate audit export``), are listed for ``deskgate audit resend``,
        logged by id and counted for the operator."""
        oldest = self.redis.xrange(self.key, count=1)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *ids)
        pipe.zadd(self.aside, {entry_id: _ms(entry_id) for entry_id in ids})
        if oldest:  # what retention trimmed cannot be resent
            pipe.zremrangebyscore(self.aside, "-inf", f"({_ms(oldest[0][0])}")
        pipe.hincrby(self.stats, "set_aside", len(ids))
        pipe.hset(self.stats, "last_set_aside", ids[-1])
        pipe.execute()
        log.error("the SIEM refuses these audit events while it takes others; set aside, still "
                  "in the trail (deskgate audit resend)", ids=ids, count=len(ids))  # fmt: skip

    def resend(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Send the events set aside again, oldest first, a batch at a time; each one the sink
        takes leaves the list (the SIEM may see it twice: the same id). Returns ``resent``,
        ``refused`` (still refused while others were taken: still set aside) and ``gone``
        (trimmed by retention). Raises ``ApiError`` when the sink takes none of a batch:
        running it again goes on from there."""
        ids: list[str] = self.redis.zrange(self.aside, 0, -1)
        counts = {"resent": 0, "refused": 0, "gone": 0}

        def resent(done: list[str]) -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.aside, *done)
            pipe.hincrby(self.stats, "resent", len(done))
            pipe.execute()
            self._took(done)
            counts["resent"] += len(done)

        for at in range(0, len(ids), self.batch):
            chunk = ids[at : at + self.batch]
            pipe = self.redis.pipeline(transaction=False)
            for entry_id in chunk:
                pipe.xrange(self.key, entry_id, entry_id)
            found = [rows[0] for rows in pipe.execute() if rows]
            held = [(entry_id, audit.event_of(fields)) for entry_id, fields in found]
            gone = set(chunk) - {entry_id for entry_id, _ in held}
            if gone:
                self.redis.zrem(self.aside, *gone)
                counts["gone"] += len(gone)
            if held:
                counts["refused"] += len(self.deliver(held, resent))
            if progress is not None:
                progress(at + len(chunk), len(ids))
        return counts

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set, backing off while the sink (or Redis) fails."""
        backoff = 0.0
        while not stop.is_set():
            try:
                self.step()
                backoff = 0.0
            except (ApiError, RedisError) as exc:
                backoff = min(max(backoff * 2, FIRST_BACKOFF), self.retry_max)
                # An outage passes by itself; the SIEM's configuration needs the operator.
                outage = isinstance(exc, Retriable | RedisError)
                (log.warning if outage else log.error)(
                    "audit sink failed; will send again", error=str(exc), retry_in_seconds=backoff
                )
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
    (events retention removed before they were sent), ``set_aside_total``, ``set_aside_waiting``
    (set aside and not yet resent), ``resent_total``, ``refusing`` (1 while the sink refuses
    every batch on grounds of its own configuration, until it takes one) and ``events`` (in the
    stream now)."""
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
        "set_aside_waiting": float(redis.zcard(aside_key(prefix))),
        "resent_total": float(stats.get("resent", 0)),
        "refusing": 1.0 if "refusing" in stats else 0.0,
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
