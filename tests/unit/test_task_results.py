"""What a task run ends as (``deskgate_tasks_total``): retried while retries are left, given up
(not failed) once they are spent, refused on a ``Fatal``, done otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.registry import REGISTRY

from connectors.http import Fatal, Retriable
from worker import tasks


class StubFlow:
    """A flow whose every step raises ``error`` (or returns 1)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    @contextmanager
    def bounded(self) -> Iterator[None]:
        yield

    def sweep(self, now: float | None) -> int:
        if self.error is not None:
            raise self.error
        return 1


def runs(result: str) -> float:
    labels = {"task": "sweep", "result": result}
    return REGISTRY.get_sample_value("deskgate_tasks_total", labels) or 0


@pytest.fixture
def flow_raising(monkeypatch: pytest.MonkeyPatch) -> Callable[[Exception | None], None]:
    def use(error: Exception | None) -> None:
        monkeypatch.setattr(tasks, "_flow", lambda task: StubFlow(error))

    return use


RESULTS = ("done", "retried", "gave_up", "refused")


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (None, {"done": 1}),
        # Run eagerly, the retries run at once: three (sweep's max_retries), then it gives up.
        (Retriable("zendesk", "down"), {"retried": 3, "gave_up": 1}),
        (Fatal("zendesk", "no"), {"refused": 1}),
    ],
)
def test_each_way_a_task_run_ends_is_counted(
    flow_raising: Callable[[Exception | None], None],
    error: Exception | None,
    counted: dict[str, int],
) -> None:
    flow_raising(error)
    before = {r: runs(r) for r in RESULTS}
    outcome: Any = tasks.sweep.apply(args=[0.0])
    # Given up, the task ends quietly (the sweep picks the work up): it does not fail with the
    # error, as Celery's retry(exc=...) past max_retries would make it.
    assert outcome.state == "SUCCESS"
    assert {r: runs(r) - before[r] for r in RESULTS} == {r: counted.get(r, 0) for r in RESULTS}
