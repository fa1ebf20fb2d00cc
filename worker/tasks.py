"""Celery tasks: thin wrappers that bind log context, run a ``Flow`` step and turn typed errors
into retries. Every task takes ids only and is idempotent, hence ``acks_late``.

Retry policy (docs/architecture.md, "Rules the code follows", 2 and 3): ``RateLimited`` waits
what the server asked,
``Retriable`` backs off exponentially with jitter, ``Busy`` tries again in a moment; every delay is
capped far below the broker's visibility timeout. ``Fatal`` is logged and not retried: the sweep
picks the verification up again later, so fixing credentials resumes the work.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import Task, shared_task
from redis.exceptions import RedisError

from config import metrics
from connectors.http import Fatal, RateLimited, Retriable, accepted_request_id
from connectors.http import request_id as current_request_id
from worker.dispatch import (
    AUDIT_MARKERS,
    CHECK_RESULT,
    POLL_DESK,
    POLL_IDP,
    START_VERIFICATION,
    SWEEP,
    Dispatcher,
)
from worker.idp.watch import watcher
from worker.lifecycle.flow import Busy, Flow
from worker.runtime import runtime

log = structlog.get_logger("deskgate.task")

MAX_RETRIES = 12
MAX_COUNTDOWN = 600.0  # far below the broker's visibility timeout (worker/celery_app.py)


def _flow(task: Task) -> Flow:
    return Flow(runtime(), Dispatcher(task.app), time.time)


def _countdown(exc: Exception, retries: int) -> float:
    if isinstance(exc, RateLimited):
        wait = exc.retry_after + random.uniform(0, 1)
    elif isinstance(exc, Busy):
        wait = random.uniform(0.5, 2.0)
    else:
        wait = random.uniform(0, min(2.0**retries, MAX_COUNTDOWN))
    return min(wait, MAX_COUNTDOWN)


def _run(task: Task, step: Callable[[Flow], Any], rid: str | None, **context: Any) -> Any:
    # The webhook's request id (a task the poller or the sweep started gets one of its own), in
    # every log line and on every outside call of this task (connectors/http.py).
    rid = accepted_request_id(rid)
    reset = current_request_id.set(rid)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task=task.name, task_id=task.request.id, request_id=rid, **context
    )
    try:
        flow = _flow(task)
        with flow.bounded():
            done = step(flow)
        metrics.task_result(task.name, "done")
        return done
    except (Retriable, Busy, RedisError) as exc:
        retries = task.request.retries
        # Checked here: past max_retries, Celery's retry(exc=...) re-raises ``exc`` (the task
        # fails) rather than raising MaxRetriesExceededError.
        if task.max_retries is not None and retries >= task.max_retries:
            metrics.task_result(task.name, "gave_up")
            log.error("gave up retrying; the sweep will pick this up", error=str(exc))
            return None
        log.info("will retry", error=str(exc), retries=retries)
        metrics.task_result(task.name, "retried")
        kwargs = {**(task.request.kwargs or {}), "request_id": rid}  # the retry keeps the id
        raise task.retry(countdown=_countdown(exc, retries), exc=exc, kwargs=kwargs) from None
    except Fatal as exc:
        metrics.task_result(task.name, "refused")
        log.error("outside system refused; not retrying", error=str(exc), status=exc.status)
        return None
    finally:
        current_request_id.reset(reset)


@shared_task(name=START_VERIFICATION, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def start_verification(
    self: Task, desk: str, ticket_id: str, origin: str = "poll", request_id: str | None = None
) -> None:
    # origin: "push" or "poll" (the audit trail's); messages queued before it existed are polls.
    # The flow binds ``ticket`` (as agents quote it) once it has read the ticket.
    start = lambda f: f.start(desk, str(ticket_id), origin)  # noqa: E731
    _run(self, start, request_id, desk=desk, ticket_id=str(ticket_id))


@shared_task(name=CHECK_RESULT, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def check_result(
    self: Task,
    verification_id: str,
    hint: str,
    now: float | None = None,
    request_id: str | None = None,
) -> None:
    _run(
        self,
        lambda f: f.check(verification_id, hint, now),
        request_id,
        verification=verification_id,
    )


@shared_task(name=POLL_DESK, bind=True, acks_late=True, max_retries=3)
def poll_desk(
    self: Task, desk: str, recover: bool = False, request_id: str | None = None
) -> int | None:
    result: int | None = _run(self, lambda f: f.poll(desk, recover), request_id, desk=desk)
    return result


@shared_task(name=SWEEP, bind=True, acks_late=True, max_retries=3)
def sweep(self: Task, now: float | None = None, request_id: str | None = None) -> int | None:
    result: int | None = _run(self, lambda f: f.sweep(now), request_id)
    return result


@shared_task(name=AUDIT_MARKERS, bind=True, acks_late=True, max_retries=3)
def audit_markers(self: Task, desk: str, request_id: str | None = None) -> int | None:
    result: int | None = _run(self, lambda f: f.audit_markers(desk), request_id, desk=desk)
    return result


@shared_task(name=POLL_IDP, bind=True, acks_late=True, max_retries=3)
def poll_idp(self: Task, idp: str, request_id: str | None = None) -> int | None:
    """Read one IdP's audit log for bypasses (``worker.idp.watch``); returns the alerts raised."""

    def step(flow: Flow) -> int | None:
        done = watcher(flow.rt, idp, flow.clock).poll()
        return None if done is None else done.alerts

    result: int | None = _run(self, step, request_id, idp=idp)
    return result
