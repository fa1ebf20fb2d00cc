"""gunicorn settings for the webhook app (``worker.commands.cli.gunicorn_args`` passes
``--config python:webhooks.gunicorn_conf``): Prometheus's multiprocess mode.

Loaded in gunicorn's master before any worker forks and before anything imports
``prometheus_client`` (the library picks its storage on import), so every worker records into
files in one ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up whichever worker answers.
The directory is the operator's if set (its ``*.db`` files are wiped on start, so counts from an
earlier run do not leak into this one, and on exit), else a private one removed on exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as config.metrics; not imported: see above

_given = os.environ.get(MULTIPROC_ENV)
_dir = Path(_given or tempfile.mkdtemp(prefix="deskgate-metrics-"))
_dir.mkdir(parents=True, exist_ok=True)


def _wipe() -> None:
    for stale in _dir.glob("*.db"):
        stale.unlink(missing_ok=True)


_wipe()
os.environ[MULTIPROC_ENV] = str(_dir)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's counts stay (they happened); its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    # The counts die with the server (Prometheus has scraped them); leave nothing behind.
    if _given:
        _wipe()
    else:
        shutil.rmtree(_dir, ignore_errors=True)
