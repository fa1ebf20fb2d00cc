"""The producer side of the queue: what webhooks, pollers and the sweep hand to the worker.

Messages carry ids only; every task re-reads the state it needs.
"""

from __future__ import annotations

from typing import Any

START_VERIFICATION = "deskgate.start_verification"
CHECK_RESULT = "deskgate.check_result"
POLL_DESK = "deskgate.poll_desk"
SWEEP = "deskgate.sweep"


class Dispatcher:
    def __init__(self, celery: Any) -> None:
        self.celery = celery

    def start_verification(self, desk: str, ticket_id: str) -> None:
        self.celery.send_task(START_VERIFICATION, args=[desk, ticket_id])

    def check_result(self, verification_id: str, hint: str, now: float | None = None) -> None:
        self.celery.send_task(CHECK_RESULT, args=[verification_id, hint, now])

    def poll_desk(self, desk: str, recover: bool = False) -> None:
        self.celery.send_task(POLL_DESK, args=[desk, recover])
