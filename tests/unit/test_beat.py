"""Two beats on one Redis: only one schedules (worker/beat.py). Each beat is Celery's own
scheduler, configured as ``deskgate beat`` runs it, ticking against the tests' Redis; each
publishes to a queue of its own, so what reaches a queue says which beat sent it."""

from __future__ import annotations

import time
from pathlib import Path

from celery.beat import Scheduler
from celery.utils.imports import symbol_by_name
from redis import Redis

from connectors.registry import SETTINGS
from tests.conftest import queued, settings_data
from worker.celery_app import make_celery
from worker.dispatch import SWEEP


def beat(queue: str, schedule: Path) -> Scheduler:
    """A beat whose sweep is due every second, sending to ``queue``."""
    app = make_celery(SETTINGS(**settings_data(queue=queue, sweep_interval_seconds=1)))
    scheduler: Scheduler = symbol_by_name(app.conf.beat_scheduler)(
        app=app, schedule_filename=str(schedule)
    )
    return scheduler


def run(beats: list[Scheduler], seconds: float) -> None:
    """Tick each beat as its service loop would, for ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for scheduler in beats:
            scheduler.tick()
        time.sleep(0.02)


def sweeps(redis: Redis[str], queue: str) -> int:
    return sum(1 for task, _ in queued(redis, queue) if task == SWEEP)


def test_a_second_beat_stands_by_and_takes_over_when_the_first_stops(
    redis: Redis[str], tmp_path: Path
) -> None:
    first, second = beat("q-first", tmp_path / "first"), beat("q-second", tmp_path / "second")
    run([first, second], 3.5)
    assert sweeps(redis, "q-first") >= 2
    assert sweeps(redis, "q-second") == 0

    first.close()  # a clean stop hands over at once
    run([second], 2.5)
    assert sweeps(redis, "q-second") >= 1
    second.close()


def test_a_beat_that_died_holding_the_lock_is_replaced_after_its_ttl(
    redis: Redis[str], tmp_path: Path
) -> None:
    first, second = beat("q-first", tmp_path / "first"), beat("q-second", tmp_path / "second")
    for scheduler in (first, second):
        scheduler.lock_ttl = 1.0
    run([first], 0.2)
    sent = sweeps(redis, "q-first")
    run([second], 2.5)  # the first is silent (stopped, paused): its lock lapses
    assert sweeps(redis, "q-second") >= 1
    run([first, second], 1.5)  # back, it finds the lock taken: it stands by
    assert sweeps(redis, "q-first") == sent
    for scheduler in (first, second):
        scheduler.close()


def test_every_beat_touches_its_heartbeat_standing_by_or_not(
    redis: Redis[str], tmp_path: Path
) -> None:
    first, second = beat("q-first", tmp_path / "first"), beat("q-second", tmp_path / "second")
    started = time.time()
    run([first, second], 0.2)
    for name in ("first", "second"):
        assert (tmp_path / f"{name}.alive").stat().st_mtime >= started - 1
    assert first.holding and not second.holding
    for scheduler in (first, second):
        scheduler.close()
