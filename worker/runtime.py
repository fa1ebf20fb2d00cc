"""Per-process resources: settings, the Redis client, the lifecycle store, one HTTP client per
outside system. Built lazily on first use in the process that uses them (so never before a fork)
and shared by that process's threads."""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field

from redis import BlockingConnectionPool, Redis

from config import metrics
from config.logging import configure_logging
from config.settings import Settings
from connectors.identity_provider import IdentityProvider
from connectors.incode import IncodeClient
from connectors.registry import build_desk, build_idp, load_settings
from connectors.ticketing import Desk
from worker.pace import Pace, PacedDesk
from worker.store import Store


@functools.cache
def current_settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@dataclass
class Runtime:
    settings: Settings
    redis: Redis[str]
    store: Store
    incode: IncodeClient
    desks: dict[str, Desk]
    pid: int
    idps: dict[str, IdentityProvider] = field(default_factory=dict)


def build_runtime(settings: Settings) -> Runtime:
    # Threads wait for a free connection instead of failing (redis-py raises past its cap).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=10,
        max_connections=512,
        timeout=20,
    )
    redis: Redis[str] = Redis(connection_pool=pool)  # type: ignore[assignment] # decoded by the pool
    timeout, deadline = settings.http_timeout_seconds, settings.http_deadline_seconds
    metrics.set_enabled(settings.metrics_enabled)
    pace = Pace(redis, settings.key_prefix)  # a desk's Retry-After holds every worker back
    return Runtime(
        settings=settings,
        redis=redis,
        store=Store(
            redis,
            settings.key_prefix,
            settings.retention_days * 86400,
            audit_max_events=settings.audit_max_events,
            audit_retention_seconds=settings.audit_retention_days * 86400,
        ),
        incode=IncodeClient(settings.incode, timeout, deadline),
        desks={
            name: PacedDesk(build_desk(name, desk, timeout, deadline), pace)
            for name, desk in settings.desks.items()
        },
        pid=os.getpid(),
        idps={name: build_idp(name, idp, timeout, deadline) for name, idp in settings.idps.items()},
    )


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = build_runtime(current_settings())
        return _runtime
