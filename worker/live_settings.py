"""The settings a process runs with, re-read without a restart, so a secret can be rotated while
Deskgate keeps serving (docs/operations.md, "Rotating secrets").

A reload happens when one of the files the settings come from changed (the TOML file named by
``DESKGATE_CONFIG``, every ``DESKGATE_<...>_FILE`` secret file: looked at, by their size and
modification time, at most every ``CHECK_SECONDS``) or when the process got ``SIGHUP``
(``request_reload``). The environment itself cannot change under a running process: a secret set
as a plain variable is rotated by a restart, one in a file or the TOML by a reload.

The new ``Settings`` replaces the old in one assignment, so a request or task sees one or the
other, never a mix. A configuration that fails validation is not taken: the old one stays and
the log says why (the error names each field, never a value).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from config.settings import CONFIG_PATH_ENV, ENV_PREFIX, FILE_SUFFIX, ConfigError, Settings

log = structlog.get_logger("deskgate.settings")

CHECK_SECONDS = 30.0

Stamp = tuple[tuple[str, int, int], ...]


def sources_stamp() -> Stamp:
    """Size and modification time of every file the settings are read from (-1 if missing)."""
    paths = [
        value
        for name, value in os.environ.items()
        if name.upper() == CONFIG_PATH_ENV
        or (name.upper().startswith(ENV_PREFIX) and name.upper().endswith(FILE_SUFFIX))
    ]
    stamps = []
    for path in sorted(paths):
        try:
            info = Path(path).stat()
        except OSError:
            stamps.append((path, -1, -1))
        else:
            stamps.append((path, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


class LiveSettings:
    def __init__(
        self,
        load: Callable[[], Settings],
        *,
        check_seconds: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Settings], None] | None = None,
    ) -> None:
        self._load, self._clock, self._on_change = load, clock, on_change
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._stamp = sources_stamp()
        self._current = load()  # a bad configuration at start-up stops the process, as before
        self._next_check = clock() + check_seconds
        self._requested = False

    def request_reload(self) -> None:
        """Reload on the next ``get`` (what ``SIGHUP`` does: a signal handler must not block)."""
        self._requested = True

    def get(self) -> Settings:
        """The settings now; reloads first when a source file changed or a reload was asked."""
        if self._requested or self._clock() >= self._next_check:
            with self._lock:
                self._maybe_reload()
        return self._current

    def _maybe_reload(self) -> None:
        requested, self._requested = self._requested, False
        if not requested and self._clock() < self._next_check:
            return  # another thread looked meanwhile
        self._next_check = self._clock() + self._check_seconds
        stamp = sources_stamp()
        if not requested and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            settings = self._load()
        except ConfigError as exc:
            log.error("settings reload refused; keeping the running configuration", error=str(exc))
            return
        self._current = settings
        if self._on_change is not None:
            self._on_change(settings)
        log.info("settings reloaded", trigger="SIGHUP" if requested else "a source file changed")
