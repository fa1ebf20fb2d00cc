"""gunicorn settings for the webhook app (``worker.commands.cli.gunicorn_args`` passes
``--config python:webhooks.gunicorn_conf``): Prometheus's multiprocess mode, and gunicorn's own
log lines (start-up, worker exits, the access log) as JSON through Deskgate's redaction.

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

from gunicorn import glogging

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


class JsonLogger(glogging.Logger):  # type: ignore[misc] # gunicorn has no type hints
    """gunicorn's error and access logs, handed to the root logger that ``configure_logging``
    sets up (the app's own settings: level, format, redaction), so every line the web process
    writes is one format: no plain-text lines among the JSON ones."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from worker.runtime import current_settings  # after MULTIPROC_ENV is set, above

        current_settings()  # loads the settings and configures logging from them
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


logger_class = JsonLogger
# The access line names the request id the app answered with (webhooks/app.py), so a delivery's
# access line and its app lines are found together; no user agent or referrer (nobody's business).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
