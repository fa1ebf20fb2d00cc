"""The Celery entry point: ``celery -A worker.main worker`` / ``beat`` (``deskgate worker`` and
``deskgate beat`` run these). Importing it loads the configuration: a bad one stops here, naming
the field."""

from __future__ import annotations

from celery import Celery

from worker import metrics  # noqa: F401 - connects the metrics server to the worker's signals
from worker.celery_app import make_celery
from worker.runtime import current_settings

app: Celery = make_celery(current_settings())
