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
from worker.runtime import current_settings, runtime

app: Celery = make_celery(current_settings())
_halt: list[Callable[[], None]] = []


@worker_ready.connect
def _forward_audit(**_: Any) -> None:
    """With ``audit_sink`` set, each worker forwards the audit trail (worker/audit_forwarder.py)."""
    settings = current_settings()
    if settings.audit_sink is None:
        return
    sink = AuditSink(settings.audit_sink)
    _halt.append(
        audit_forwarder.start(
            runtime().redis,
            settings.key_prefix,
            sink.send,
            batch=settings.audit_sink.batch_size,
            retry_max=settings.audit_sink.retry_max_seconds,
        )
    )


@worker_shutdown.connect
def _stop_forwarding(**_: Any) -> None:
    while _halt:
        _halt.pop()()
