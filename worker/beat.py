"""Exactly one beat schedules, however many run: a second ``deskgate beat`` started by mistake
(a scaled deployment, an old container still stopping) stands by instead of doubling every poll
and sweep.

Each tick, beat takes or renews a lock in Redis (a key holding this beat's token, with a TTL);
only the holder schedules. The holder renews it every ``LOOP_SECONDS``, well within
``LOCK_TTL_SECONDS``, and gives it up when it stops, so a standby takes over at its next tick; a
holder that died without stopping is replaced once the TTL runs out. Every beat, holder or
standby, touches a heartbeat file beside its schedule file on each tick, for health checks.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import structlog
from celery.beat import PersistentScheduler
from redis import Redis
from redis.exceptions import RedisError

from worker.redis_client import connect

log = structlog.get_logger("deskgate.beat")

LOCK_TTL_SECONDS = 30.0
LOOP_SECONDS = 5.0  # beat wakes at least this often, so the lock is renewed long before it lapses
HEARTBEAT_SUFFIX = ".alive"

# Take the lock when free, renew it when ours; one step, so two beats never both hold it.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_key(key_prefix: str) -> str:
    return f"{key_prefix}:beat:lock"


class SingleBeat(PersistentScheduler):  # type: ignore[misc] # Celery ships no types
    """Celery's file-backed scheduler, scheduling only while it holds the beat lock
    (``beat_scheduler`` in ``worker/celery_app.py``)."""

    lock_ttl = LOCK_TTL_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock_key: str = self.app.conf.deskgate_beat_lock
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.redis: Redis[str] = connect(self.app.conf.deskgate_redis_url, socket_timeout=5)
        self._take = self.redis.register_script(_HOLD)
        self._release = self.redis.register_script(_RELEASE)
        self.holding = False
        self._said: bool | None = None  # what the log last said this beat was doing
        self.heartbeat = Path(f"{self.schedule_filename}{HEARTBEAT_SUFFIX}")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.heartbeat.touch()
        if not self._hold():
            return LOOP_SECONDS
        return float(min(super().tick(*args, **kwargs), LOOP_SECONDS))

    def close(self) -> None:
        try:
            if self.holding:
                self._release(keys=[self.lock_key], args=[self.token])
                log.info("beat stopped: lock released for a standby beat")
        except RedisError as exc:
            log.warning("beat stopped: lock left to expire", error=str(exc))
        finally:
            self.holding = False
            self.redis.close()
            super().close()

    def _hold(self) -> bool:
        try:
            held = self._take(keys=[self.lock_key], args=[self.token, int(self.lock_ttl * 1000)])
        except RedisError as exc:
            # Nothing can be sent without Redis anyway; schedule nothing rather than guess.
            log.warning("beat cannot reach the lock: not scheduling", error=str(exc))
            held = 0
        self.holding = bool(held)
        if self.holding != self._said:
            self._said = self.holding
            if self.holding:
                log.info("beat scheduling: this beat holds the lock")
            else:
                log.warning("beat standing by: another beat holds the lock", lock=self.lock_key)
        return self.holding
