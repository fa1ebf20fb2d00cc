"""structlog set-up: JSON lines on stdout (or a console renderer for people), with personal data
masked and secrets dropped by a processor, whatever a caller passes in.

Standard-library logging (Celery's "Retry in 5s: ..." and task tracebacks, kombu, Flask,
``warnings``) goes through the same processor: the root logger gets a handler whose formatter runs
``redact`` on each record's message and formatted traceback before rendering it the same way."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

from config.privacy import display_url, scrub

# Values under these keys never reach the output, whatever they hold.
_SECRET_KEYS = ("secret", "password", "token", "authorization", "api_key", "url", "link")
# Deskgate's own operational values, which an operator must be able to read and which hold
# nobody's data, exempted by name only (the patterns stay strict for everything else):
# an address Deskgate itself serves on, shown from its parts (no user-info, no query);
_OPERATIONAL_URL_KEYS = frozenset({"metrics_url"})
# library records whose arguments are Deskgate's own: (logger, message template). Celery's
# "celery@host ready." names the worker node (Celery's name@host, not anyone's address).
_OPERATIONAL_RECORDS = frozenset({("celery.apps.worker", "%s ready.")})


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A standard-library record: ProcessorFormatter passes it and its arguments (pass_foreign_args).
    record = event.get("_record")
    args = event.pop("positional_args", ()) if event.get("_from_structlog") is False else ()
    for key, value in list(event.items()):
        event[key] = _clean(str(key), value)
    if isinstance(record, logging.LogRecord) and (record.name, record.msg) in _OPERATIONAL_RECORDS:
        # Not the arguments that template takes: it stays scrubbed.
        with contextlib.suppress(TypeError, ValueError):
            event["event"] = record.msg % args
    return event


def _clean(key: str, value: Any) -> Any:
    """``value`` as it may be logged under ``key``: secrets dropped, personal data masked, in
    nested lists and mappings too."""
    if key in _OPERATIONAL_URL_KEYS and isinstance(value, str):
        return display_url(value)
    if any(part in key.lower() for part in _SECRET_KEYS):
        return "[redacted]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {k: _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(key, v) for v in value]
    return value


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (a type of its own, so a second call replaces
    it and leaves other handlers, such as pytest's, alone)."""


# Libraries that log full URLs (query strings included) at INFO stay quiet below WARNING.
_CHATTY = ("httpx", "httpcore")


def configure_logging(
    level: str = "INFO", fmt: Literal["json", "console"] = "json", *, stream: Any = None
) -> None:
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # format_exc_info first: a traceback becomes text that redact then scrubs.
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        redact,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = _RedactingHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            pass_foreign_args=True,  # for redact's operational records; it takes them off
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RedactingHandler)]:
        root.removeHandler(old)
    # Celery leaves a root logger that has a handler alone (worker_hijack_root_logger=False).
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # kombu's and Celery's warnings are log records too
