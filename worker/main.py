"""The Celery entry point: ``celery -A worker.main worker`` / ``beat`` (``deskgate worker`` and
``deskgate beat`` run these). Importing it loads the configuration: a bad one stops here, naming
the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from connectors.audit_sink import AuditSink
from worker import (
    audit_forwarder,
    metrics,  # noqa: F401 - connects the metrics server to the worker's signals
)
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
    """With ``audit_sink`` set, each worker forwards the audit trail (worker/audit_forwarder.py)."""
    settings = current_settings()
    if settings.audit_sink is None:
        return
    config = settings.audit_sink
    sink = AuditSink(config)
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


@worker_shutdown.connect
def _stop_forwarding(**_: Any) -> None:
    while _halt:
        _halt.pop()()
