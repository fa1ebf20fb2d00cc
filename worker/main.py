"""The Celery entry point: ``celery -A worker.main worker`` / ``beat`` (``deskgate worker`` and
``deskgate beat`` run these). Importing it loads the configuration: a bad one stops here, naming
the field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from connectors.audit_sink import AuditSink
from worker import metrics  # noqa: F401 - connects the metrics server to the worker's signals
from worker.audit import forwarder as audit_forwarder
from worker.celery_app import make_celery
from worker.runtime import current_settings, install_reload_signal, runtime

app: Celery = make_celery(current_settings())
_halt: list[Callable[[], None]] = []


@worker_ready.connect
def _reload_on_hangup(**_: Any) -> None:
    """``SIGHUP`` reloads the settings (Celery's own handler would restart the worker instead)."""
    install_reload_signal()


@worker_ready.connect
def _forward_audit(**_: Any) -> None:
    """With ``audit_sink`` set, each worker forwards the audit trail (worker/audit/forwarder.py)."""
    settings = current_settings()
    if settings.audit_sink is None:
        return
    config = settings.audit_sink
    sink = _ReloadingSink(AuditSink(config))
    # Another forwarder claims a batch only once its holder cannot still be backing off or
    # sending it (a send ends within twice its timeout: connectors/deadline.py).
    busy = config.retry_max_seconds + 2 * config.timeout_seconds + 10
    _halt.append(
        audit_forwarder.start(
            runtime().redis,
            settings.key_prefix,
            sink.send,
            batch=config.batch_size,
            retry_max=config.retry_max_seconds,
            claim_idle_ms=int(max(audit_forwarder.CLAIM_IDLE_MS, busy * 1000)),
        )
    )


class _ReloadingSink:
    """The SIEM sink of the settings now: a rotated token or HMAC secret is used from the next
    batch on, without a restart (``worker.live_settings``). Removing ``audit_sink`` altogether
    stops forwarding only at the next restart; until then the last sink is kept."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        config = current_settings().audit_sink
        if config is not None and config is not self.sink.config:
            old, self.sink = self.sink, AuditSink(config)
            old.client.close()
        self.sink.send(events)


@worker_shutdown.connect
def _stop_forwarding(**_: Any) -> None:
    while _halt:
        _halt.pop()()
