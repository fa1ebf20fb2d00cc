"""A real Sentinel set (a primary, a replica, three sentinels): the store's client and the Celery
broker both find the primary through the sentinels, and both follow it when it fails over."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from connectors.registry import load_settings
from sandbox.stack import wait_for
from tests.conftest import settings_data
from tests.redis_servers import SentinelSet, sentinel_set
from worker.celery_app import make_celery
from worker.dispatch import SWEEP
from worker.redis_client import connect


def attempt(command: Callable[..., object], *args: str) -> bool:
    try:
        return bool(command(*args))
    except RedisError:
        return False


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path) as started:
        yield started


def test_the_store_and_the_broker_follow_the_primary_through_a_failover(
    nodes: SentinelSet,
) -> None:
    settings = load_settings(**settings_data(redis_url=nodes.url(db=2), queue="dg-sentinel"))
    store = connect(settings.redis_url, blocking=True, max_connections=8, timeout=5)
    app = make_celery(settings)
    try:
        store.set("dg:before", "1")
        app.send_task(SWEEP, args=[1.0])
        assert nodes.primary_port() == nodes.primary.port
        nodes.primary.kill()  # a crash: the sentinels see it down after 1 s and elect
        wait_for(lambda: nodes.primary_port() == nodes.replica.port, 30, "the failover", every=0.1)
        # The same client writes on: its connections to the dead primary are dropped and new
        # ones go where the sentinels now say.
        wait_for(partial(attempt, store.set, "dg:after", "1"), 30, "a write through the sentinels")
        app.send_task(SWEEP, args=[2.0])
        with nodes.replica.client() as direct:
            direct.select(2)
            assert direct.get("dg:before") == "1"  # replicated before the failover
            assert direct.get("dg:after") == "1"
            assert direct.llen("dg-sentinel") == 2  # both tasks, queued on the primary of its day
    finally:
        app.close()
        store.close()
