"""The Celery app: JSON only, one message at a time per thread, late acks on idempotent tasks,
and time limits kept consistent with the broker's visibility timeout.

Run a worker with ``deskgate worker`` (or ``celery -A worker.main worker --pool threads``).
The pool is threads: tasks spend their time waiting on three outside APIs, so cheap waiting beats
one process per core (docs/architecture.md, "Rules the code follows").
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from config.redis_url import broker
from config.settings import Settings
from worker import sentinel_broker
from worker.beat import LOOP_SECONDS, lock_key
from worker.dispatch import AUDIT_MARKERS, POLL_DESK, POLL_IDP, SWEEP

VISIBILITY_TIMEOUT = 3600  # a message not acked by then is redelivered
RECOVERY_SCAN_SECONDS = 1800
# The broker's Redis transport; the webhook app's enqueue (worker/dispatch.py) derives the
# queue's key from the same options.
TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}


def make_celery(settings: Settings) -> Celery:
    broker_url, sentinel_options = broker(settings.redis_url)
    app = Celery("deskgate", broker=broker_url, include=["worker.tasks"])
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # state lives in the lifecycle store, not in results
        result_backend=None,
        # Through Sentinel: kombu's transport, mended to survive a failover (its module says how).
        broker_transport=sentinel_broker.TRANSPORT if sentinel_options else None,
        broker_transport_options={**TRANSPORT_OPTIONS, **sentinel_options},
        result_backend_transport_options=dict(TRANSPORT_OPTIONS),
        visibility_timeout=VISIBILITY_TIMEOUT,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.task_time_limit_seconds * 3 // 4,
        task_time_limit=settings.task_time_limit_seconds,
        timezone="UTC",
        # One beat schedules, whatever runs (worker/beat.py); it wakes often enough to renew it.
        beat_scheduler="worker.beat:SingleBeat",
        beat_max_loop_interval=LOOP_SECONDS,
        deskgate_beat_lock=lock_key(settings.key_prefix),
        # The store's Redis as Deskgate names it (a sentinel:// URL included), for beat's lock:
        # the broker URL is kombu's form, which a Redis client cannot read.
        deskgate_redis_url=settings.redis_url,
        beat_schedule={
            **{
                f"poll-{name}": {
                    "task": POLL_DESK,
                    "schedule": float(desk.poll_interval_seconds),
                    "args": [name],
                }
                for name, desk in settings.desks.items()
            },
            # The rare scan of gated tickets, for verifications Redis lost (an Incode webhook
            # for an unknown session also starts one).
            **{
                f"recover-{name}": {
                    "task": POLL_DESK,
                    "schedule": float(RECOVERY_SCAN_SECONDS),
                    "args": [name, True],
                }
                for name in settings.desks
            },
            # Verified markers Deskgate cannot prove it wrote (worker/lifecycle/marker_audit.py).
            **{
                f"audit-markers-{name}": {
                    "task": AUDIT_MARKERS,
                    "schedule": float(desk.marker_audit_interval_seconds),
                    "args": [name],
                }
                for name, desk in settings.desks.items()
            },
            "sweep": {"task": SWEEP, "schedule": float(settings.sweep_interval_seconds)},
            # Each IdP's audit log, for admin actions no verified ticket explains.
            **{
                f"idplog-{name}": {
                    "task": POLL_IDP,
                    "schedule": float(settings.idp_poll_interval_seconds),
                    "args": [name],
                }
                for name in settings.idps
            },
        },
    )
    return app
