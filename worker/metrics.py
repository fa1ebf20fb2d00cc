"""The worker's Prometheus endpoint and the gauges read from Redis when it is scraped.

``deskgate worker`` runs Celery's thread pool: one process, so the default registry and one HTTP
server on ``metrics_host:metrics_port``, started when the worker is ready (``metrics_port``
unset or 0: none). If the worker is ever run with a forking pool, the launcher must set
``PROMETHEUS_MULTIPROC_DIR`` like ``deskgate web`` does; then the server reads every process's
files and a child's gauges go when it exits.

Open verifications, their oldest age by state, overdue ones, the queue depth and the desks'
remaining cool-downs are read from Redis at scrape time (one pipelined round trip of O(log n)
reads, plus one for the queue and the cool-downs), so they are never stale and cost nothing
between scrapes. Only the worker serves them: several web workers would report the same values
again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from celery import signals
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from config import metrics
from config.settings import Settings
from worker import audit
from worker.audit import forwarder as audit_forwarder
from worker.celery_app import TRANSPORT_OPTIONS
from worker.dispatch import queue_key
from worker.lifecycle.pace import Pace
from worker.lifecycle.store import INDEXED
from worker.runtime import Runtime, current_settings, runtime

log = structlog.get_logger("deskgate.metrics")

# Verification counts and durations come from the audit events themselves, so the metrics, the
# audit trail and the report count the same things (docs/metrics.md).
audit.listen(metrics.observe)

OVERDUE_AFTER_SECONDS = 300


class StoreCollector(Collector):
    """Gauges read from Redis on each scrape (``config.metrics.COLLECTED_GAUGES``)."""

    def __init__(self, current: Any = runtime, clock: Any = time.time) -> None:
        self.current = current
        self.clock = clock

    def describe(self) -> list[Metric]:
        """The names it serves, without reading Redis: the registry asks when it registers."""
        gauges = [GaugeMetricFamily(*m) for m in (metrics.STORE_UP, *metrics.COLLECTED_GAUGES)]
        return [*gauges, *(CounterMetricFamily(*m) for m in metrics.COLLECTED_COUNTERS)]

    def collect(self) -> Iterator[Metric]:
        rt: Runtime = self.current()
        up = GaugeMetricFamily(*metrics.STORE_UP)
        try:
            families = self._read(rt, self.clock())
        except RedisError as exc:
            log.warning("metrics: Redis did not answer", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, rt: Runtime, now: float) -> list[Metric]:
        settings: Settings = rt.settings
        states, overdue = rt.store.open_states(now - OVERDUE_AFTER_SECONDS)
        count = GaugeMetricFamily(*metrics.OPEN_VERIFICATIONS, labels=["state"])
        oldest = GaugeMetricFamily(*metrics.OLDEST_OPEN_AGE, labels=["state"])
        for state in INDEXED:
            n, since = states[state]
            count.add_metric([state.value], n)
            oldest.add_metric([state.value], 0 if since is None else max(now - since, 0.0))
        late = GaugeMetricFamily(*metrics.OVERDUE)
        late.add_metric([], overdue)
        depth = GaugeMetricFamily(*metrics.QUEUE_DEPTH)
        depth.add_metric([], rt.redis.llen(queue_key(settings.queue, TRANSPORT_OPTIONS)))
        pace = Pace(rt.redis, settings.key_prefix)
        paused = GaugeMetricFamily(*metrics.PAUSE_REMAINING, labels=["desk"])
        for desk in settings.desks:
            paused.add_metric([desk], pace.remaining(desk))
        events = GaugeMetricFamily(*metrics.AUDIT_EVENTS)
        events.add_metric([], rt.redis.xlen(audit.stream_key(settings.key_prefix)))
        return [count, oldest, late, depth, paused, events, *self._sink(rt, now)]

    @staticmethod
    def _sink(rt: Runtime, now: float) -> list[Metric]:
        """The SIEM forwarding's lag, backlog and failures; nothing when there is no sink (every
        event would look unsent)."""
        if rt.settings.audit_sink is None:
            return []
        figures = audit_forwarder.status(rt.redis, rt.settings.key_prefix, now)
        found: list[Metric] = []
        for family, value in (
            (GaugeMetricFamily(*metrics.SINK_LAG), figures["lag_seconds"]),
            (GaugeMetricFamily(*metrics.SINK_UNSENT), figures["unsent"]),
            (GaugeMetricFamily(*metrics.SINK_REFUSING), figures["refusing"]),
            (GaugeMetricFamily(*metrics.SINK_SET_ASIDE_WAITING), figures["set_aside_waiting"]),
            (CounterMetricFamily(*metrics.SINK_FAILURES), figures["failures_total"]),
            (CounterMetricFamily(*metrics.SINK_FORWARDED), figures["forwarded_total"]),
            (CounterMetricFamily(*metrics.SINK_SET_ASIDE), figures["set_aside_total"]),
        ):
            family.add_metric([], value)
            found.append(family)
        return found


_server: Any = None


def serve(settings: Settings) -> bool:
    """Start the worker's metrics server if ``metrics_port`` asks for one; True if it did."""
    global _server
    metrics.set_enabled(settings.metrics_enabled)
    if not settings.metrics_enabled or not settings.metrics_port or _server is not None:
        return False
    metrics.initialise(settings.desks, settings.idps)
    registry = metrics.scrape_registry()
    try:
        _server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        # The worker still works; without its metrics DeskgateWorkerDown fires. Say which setting.
        log.error(
            "metrics not served: cannot listen on metrics_host:metrics_port",
            metrics_host=settings.metrics_host,
            metrics_port=settings.metrics_port,
            error=str(exc),
        )
        return False
    registry.register(StoreCollector())
    log.info(
        "metrics served",
        metrics_url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
    )
    return True


def _on_init(**_: Any) -> None:
    # A forking pool with PROMETHEUS_MULTIPROC_DIR set: start from an empty directory, so an
    # earlier run's counts do not leak into this one (before any child records).
    directory = os.environ.get(metrics.MULTIPROC_ENV)
    if directory:
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


def _on_ready(**_: Any) -> None:
    try:
        added = runtime().store.index_open_states()
    except RedisError as exc:  # the gauges undercount until the next start; nothing else needs it
        log.warning("could not index the open verifications", error=str(exc))
    else:
        if added:
            log.info("open verifications indexed for the metrics", added=added)
    serve(current_settings())


def _on_shutdown(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server = None


def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    # Only with a forking pool and PROMETHEUS_MULTIPROC_DIR set: the child's live gauges go.
    if pid is not None and metrics.MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# weak=False: the module-level functions must stay connected for the worker's life.
signals.celeryd_init.connect(_on_init, weak=False)
signals.worker_ready.connect(_on_ready, weak=False)
signals.worker_shutdown.connect(_on_shutdown, weak=False)
signals.worker_process_shutdown.connect(_on_child_exit, weak=False)
