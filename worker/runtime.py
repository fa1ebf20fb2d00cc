"""Per-process resources: settings, the Redis client, the lifecycle store, one HTTP client per
outside system. Built lazily on first use in the process that uses them (so never before a fork)
and shared by that process's threads. Settings are re-read without a restart
(``worker.live_settings``); the resources are built again for the next task once they change, so
a rotated outbound secret (an API token, a password) is used from then on."""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis import Redis

from config import metrics
from config.logging import configure_logging
from config.settings import Settings
from connectors.identity_provider import IdentityProvider
from connectors.incode import IncodeClient
from connectors.registry import build_desk, build_idp, load_settings
from connectors.ticketing import Desk
from worker.audit.chain import Chain
from worker.lifecycle.pace import Pace, PacedDesk, PacedIdp
from worker.lifecycle.store import Store
from worker.live_settings import LiveSettings
from worker.redis_client import connect

log = structlog.get_logger("deskgate.settings")


_logging: dict[str, Any] = {}  # the level, format and stream logging was configured with


def _configured(settings: Settings) -> None:
    """Configure logging for ``settings``: at start, and on a reload only if the level or the
    format changed, onto the stream chosen at start (a Celery worker has since replaced
    ``sys.stdout`` with a proxy into logging itself: configured onto it, every line is lost)."""
    wanted = (settings.log_level, settings.log_format)
    if _logging.get("as") == wanted:
        return
    stream = _logging.setdefault("stream", sys.stdout)
    configure_logging(*wanted, stream=stream)
    _logging["as"] = wanted


_live: LiveSettings | None = None
_live_lock = threading.Lock()


def live_settings() -> LiveSettings:
    """This process's settings, loaded on first use (a bad configuration stops it, naming the
    field) and reloaded when their files change or on ``SIGHUP`` (``install_reload_signal``)."""
    global _live
    if _live is not None:  # every task asks: no lock once it is there
        return _live
    with _live_lock:
        if _live is None:
            _live = LiveSettings(load_settings, on_change=_configured)
            _configured(_live.get())
        return _live


def current_settings() -> Settings:
    return live_settings().get()


def install_reload_signal(live: LiveSettings | None = None) -> None:
    """``SIGHUP`` reloads ``live`` (this process's settings by default). Python runs signal
    handlers in the main thread only, so it is installed from there."""
    live = live or live_settings()
    if threading.current_thread() is not threading.main_thread():
        log.warning("SIGHUP not installed (not the main thread); settings files are still re-read")
        return
    signal.signal(signal.SIGHUP, lambda *_: live.request_reload())


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
    redis = connect(
        settings.redis_url, blocking=True, socket_timeout=10, max_connections=512, timeout=20
    )
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
            chain=Chain.of(settings),
            audit_max_events=settings.audit_max_events,
            audit_retention_seconds=settings.audit_retention_days * 86400,
        ),
        incode=IncodeClient(settings.incode, timeout, deadline),
        desks={
            name: PacedDesk(build_desk(name, desk, timeout, deadline), pace)
            for name, desk in settings.desks.items()
        },
        pid=os.getpid(),
        idps={
            name: PacedIdp(build_idp(name, idp, timeout, deadline), pace)
            for name, idp in settings.idps.items()
        },
    )


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    with _lock:
        settings = current_settings()
        if _runtime is None or _runtime.pid != os.getpid() or _runtime.settings is not settings:
            _runtime = build_runtime(settings)
        return _runtime
