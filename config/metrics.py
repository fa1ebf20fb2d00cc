"""Every Prometheus metric Deskgate exports, in one place: names, help, labels and buckets.

It lives in ``config/`` (the lowest layer, beside logging) because the connectors, the worker
and the web app all record into it. Conventions: the ``deskgate_`` prefix, base units (seconds),
``_total`` on counters, and only bounded label values (desk names from the configuration, kinds,
reasons, outcomes, route templates, status classes; never a ticket, person or session). Where a
value comes from outside (a path, a desk name in a URL), it is mapped onto a fixed set first.

Verification counts and the four lifecycle durations come from audit events through
``observe(event)`` only, so the metrics and the audit trail agree by construction.

``docs/metrics.md`` describes every metric; keep it in step with this module.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A verification spans seconds (flag -> gate) to days (a manual review): default buckets stop at
# 10 s. 0.25 s .. 7 days.
LIFECYCLE_BUCKETS = (
    0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
    259200, 604800,
)  # fmt: skip
# One outside call: bounded by http_deadline_seconds (at most 300).
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# -- verifications (from audit events, ``observe``) ------------------------------------------

STARTED = Counter(
    "deskgate_verifications_started_total",
    "Verifications opened for a flagged ticket (origin push or poll).",
    ["desk", "reason", "origin"],
)
FINISHED = Counter(
    "deskgate_verifications_finished_total",
    "Verifications that reached a final outcome (verified, failed, expired, error).",
    ["desk", "reason", "outcome"],
)
REVIEWS = Counter(
    "deskgate_verification_reviews_total",
    "Verifications Incode sent to manual review.",
    ["desk", "reason"],
)
ABANDONED = Counter(
    "deskgate_verifications_abandoned_total",
    "Verifications dropped without an outcome because their ticket was deleted.",
    ["desk"],
)
RECOVERED = Counter(
    "deskgate_verifications_recovered_total",
    "Verifications rebuilt from Deskgate's sealed gate note after Redis lost them.",
    ["desk"],
)
LINK_CAPS = Counter(
    "deskgate_link_caps_total",
    "Verifications refused because the requester or the ticket hit a link cap, by the cap's "
    "window (short: link_cap_window_minutes; long: link_cap_long_window_hours).",
    ["desk", "window"],
)
LINK_CAP_WINDOWS = {"link_cap": "short", "link_cap_long": "long"}  # audit code -> window
GATES_LIFTED = Counter(
    "deskgate_gates_lifted_total",
    "Gates taken off a ticket (hold lifted, pending marker removed) before the result.",
    ["desk"],
)
MARKERS_OVERTURNED = Counter(
    "deskgate_markers_overturned_total",
    "Verified markers Deskgate could not prove it wrote, set to error by the marker audit "
    "(code: marker_forged, requester_changed_after).",
    ["desk", "code"],
)
MARKER_CODES = ("marker_forged", "requester_changed_after")
GRANTS = Counter(
    "deskgate_grants_total",
    "Grants a verified result opened to act in the identity provider, and what became of them "
    "(outcome opened, used, refused, expired).",
    ["desk", "reason", "outcome"],
)
IDP_ACTIONS = Counter(
    "deskgate_idp_actions_total",
    "Actions Deskgate performed in an identity provider (result done, idp_unanswered: it may "
    "have acted, idp_refused).",
    ["desk", "action", "result"],
)
TICKET_WRITES = Counter(
    "deskgate_ticket_writes_total",
    "Deskgate's writes on tickets: the gate, or an outcome (by the state written).",
    ["desk", "write", "state"],
)
FLAG_TO_GATE = Histogram(
    "deskgate_flag_to_gate_seconds",
    "From the verification opening (push or poll) to Incode sending the link.",
    ["desk"],
    buckets=LIFECYCLE_BUCKETS,
)
GATE_TO_RESULT = Histogram(
    "deskgate_gate_to_result_seconds",
    "From the link being sent to a result (review or final), by that result.",
    ["desk", "result"],
    buckets=LIFECYCLE_BUCKETS,
)
RESULT_TO_WRITTEN = Histogram(
    "deskgate_result_to_written_seconds",
    "From a result to its outcome written on the ticket, by the state written.",
    ["desk", "state"],
    buckets=LIFECYCLE_BUCKETS,
)
FLAG_TO_OUTCOME = Histogram(
    "deskgate_flag_to_outcome_seconds",
    "From the verification opening to its final outcome written on the ticket.",
    ["desk", "outcome"],
    buckets=LIFECYCLE_BUCKETS,
)

# -- outside calls (connectors/http.py) ------------------------------------------------------

OUTSIDE_REQUESTS = Counter(
    "deskgate_outside_requests_total",
    "Calls to outside systems (zendesk, servicenow, incode) by route template and status class.",
    ["system", "route", "status_class"],
)
OUTSIDE_DURATION = Histogram(
    "deskgate_outside_request_duration_seconds",
    "How long calls to outside systems took, answered or not.",
    ["system", "route"],
    buckets=CALL_BUCKETS,
)

# -- desk pacing (worker/lifecycle/pace.py) -------------------------------------------------

RATE_LIMITED = Counter(
    "deskgate_desk_rate_limited_total",
    "Times a desk answered 429 (or 503 with Retry-After).",
    ["desk"],
)
PAUSED_SECONDS = Counter(
    "deskgate_desk_paused_seconds_total",
    "Seconds added to a desk's cool-down (every worker holds back that long).",
    ["desk"],
)

# -- webhook deliveries (webhooks/) ----------------------------------------------------------

DELIVERIES = Counter(
    "deskgate_webhook_deliveries_total",
    "Webhook deliveries by endpoint and result; refusals by reason.",
    ["endpoint", "result", "reason"],
)

# -- bypass detection (worker/idp/bypass.py) ----------------------------------------------------

IDP_BYPASSES = Counter(
    "deskgate_idp_bypasses_total",
    "IdP admin actions no verified ticket explains (high, medium), and break-glass ones (info).",
    ["idp", "severity", "action"],
)
BYPASS_SEVERITIES = ("high", "medium", "info")
BYPASS_ACTIONS = ("reset_mfa", "unlock", "reset_password", "revoke_sessions")

# -- tasks (worker/tasks.py) -----------------------------------------------------------------

TASKS = Counter(
    "deskgate_tasks_total",
    "Celery task runs by result: done, retried, gave_up (retries exhausted), refused (Fatal).",
    ["task", "result"],
)
TASK_NAMES = (
    "start_verification", "check_result", "poll_desk", "sweep", "audit_markers", "poll_idp",
)  # fmt: skip
TASK_RESULTS = ("done", "retried", "gave_up", "refused")

# -- read from Redis at scrape time (worker/metrics.py) --------------------------------------
# Names and help of the gauges the worker's collector builds on each scrape.

OPEN_VERIFICATIONS = (
    "deskgate_open_verifications",
    "Open verifications by state (requested, sent, review).",
)
OLDEST_OPEN_AGE = (
    "deskgate_open_verification_oldest_age_seconds",
    "Age in its state of the oldest open verification, by state (0 when none).",
)
OVERDUE = (
    "deskgate_verifications_overdue",
    "Open verifications the sweep should have looked at more than five minutes ago.",
)
QUEUE_DEPTH = ("deskgate_queue_depth", "Tasks waiting in the Celery queue (LLEN).")
PAUSE_REMAINING = (
    "deskgate_desk_pause_remaining_seconds",
    "Seconds left of a desk's cool-down (0: calls go out).",
)
STORE_UP = ("deskgate_store_up", "1 if Redis answered this scrape's reads, else 0.")
AUDIT_EVENTS = ("deskgate_audit_events", "Audit events held in Redis (the stream's length).")
# With [audit_sink] set (worker/audit/forwarder.py's figures, shared by every worker in Redis):
SINK_LAG = (
    "deskgate_audit_sink_lag_seconds",
    "Age of the oldest audit event the SIEM has not acknowledged (0: none waiting).",
)
SINK_UNSENT = ("deskgate_audit_sink_unsent_events", "Audit events the SIEM has not acknowledged.")
SINK_REFUSING = (
    "deskgate_audit_sink_refusing",
    "1 while the SIEM refuses every batch on grounds of its own configuration (index, channel, "
    "token, URL), until it takes events again.",
)
SINK_SET_ASIDE_WAITING = (
    "deskgate_audit_sink_set_aside_waiting_events",
    "Audit events the SIEM refused while it took their neighbours, not yet resent "
    "(deskgate audit resend).",
)
COLLECTED_GAUGES = (
    OPEN_VERIFICATIONS, OLDEST_OPEN_AGE, OVERDUE, QUEUE_DEPTH, PAUSE_REMAINING, AUDIT_EVENTS,
    SINK_LAG, SINK_UNSENT, SINK_REFUSING, SINK_SET_ASIDE_WAITING,
)  # fmt: skip
# Counters read from Redis (served with ``_total``).
SINK_FAILURES = ("deskgate_audit_sink_failures", "Sends of audit events the SIEM did not take.")
SINK_FORWARDED = ("deskgate_audit_sink_forwarded_events", "Audit events the SIEM acknowledged.")
SINK_SET_ASIDE = (
    "deskgate_audit_sink_set_aside_events",
    "Audit events set aside: the SIEM refused each alone while it took their neighbours.",
)
COLLECTED_COUNTERS = (SINK_FAILURES, SINK_FORWARDED, SINK_SET_ASIDE)

# -- switch ----------------------------------------------------------------------------------

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Record or not (``metrics_enabled``): off, every helper below returns at once."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled


def initialise(desks: Iterable[str], idps: Iterable[str] = ()) -> None:
    """Create the label sets alerts rely on at zero, so ``increase()`` sees a first run."""
    for idp in idps:
        for severity in BYPASS_SEVERITIES:
            for action in BYPASS_ACTIONS:
                IDP_BYPASSES.labels(idp, severity, action)
    for task in TASK_NAMES:
        for result in TASK_RESULTS:
            TASKS.labels(task, result)
    for desk in desks:
        RATE_LIMITED.labels(desk)
        PAUSED_SECONDS.labels(desk)
        for window in LINK_CAP_WINDOWS.values():
            LINK_CAPS.labels(desk, window)
        RECOVERED.labels(desk)
        GATES_LIFTED.labels(desk)
        for code in MARKER_CODES:
            MARKERS_OVERTURNED.labels(desk, code)


# -- recording helpers -----------------------------------------------------------------------


def status_class(status: int | None) -> str:
    """``2xx`` .. ``5xx``; ``error`` when no answer came back."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


# An id: all digits, three digits or more anywhere, a long hex string, or a long segment.
# ("v2", "b2b" and "oauth2" stay as they are.)
_ID_SEGMENT = re.compile(r"^\d+$|\d.*\d.*\d|^[0-9a-fA-F]{16,}$|^.{41,}$")
MAX_ROUTES = 64  # per system; past it "other": a bug elsewhere never floods the TSDB
_routes: dict[str, set[str]] = {}
_routes_lock = threading.Lock()


def route_of(system: str, method: str, url: str) -> str:
    """``GET /api/v2/tickets/{id}.json`` from ``GET /api/v2/tickets/123.json?include=users``:
    path segments that look like ids (digits, a long hex string, over 40 characters) become
    ``{id}``, the query goes, and a system never has more than ``MAX_ROUTES`` routes."""
    path = url.split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    parts = []
    for segment in path.split("/"):
        stem, dot, ext = segment.partition(".")
        if _ID_SEGMENT.search(stem):
            segment = "{id}" + (dot + ext if ext.isalpha() and len(ext) <= 5 else "")
        parts.append(segment)
    route = f"{method.upper()} {'/'.join(parts)}"
    with _routes_lock:
        known = _routes.setdefault(system, set())
        if route not in known:
            if len(known) >= MAX_ROUTES:
                return "other"
            known.add(route)
    return route


def outside_call(system: str, method: str, url: str, status: int | None, seconds: float) -> None:
    if not _enabled:
        return
    route = route_of(system, method, url)
    OUTSIDE_REQUESTS.labels(system, route, status_class(status)).inc()
    OUTSIDE_DURATION.labels(system, route).observe(seconds)


def rate_limited(desk: str, added_seconds: float) -> None:
    if not _enabled:
        return
    RATE_LIMITED.labels(desk).inc()
    if added_seconds > 0:
        PAUSED_SECONDS.labels(desk).inc(added_seconds)


def delivery(endpoint: str, result: str, reason: str = "") -> None:
    if _enabled:
        DELIVERIES.labels(endpoint, result, reason).inc()


def task_result(task: str, result: str) -> None:
    if _enabled:
        TASKS.labels(task.rsplit(".", 1)[-1], result).inc()


# -- audit events -> metrics -----------------------------------------------------------------

FINAL_EVENTS = {
    "verification.verified": "verified",
    "verification.failed": "failed",
    "verification.expired": "expired",
    "verification.error": "error",
}
FINAL_STATES = frozenset(FINAL_EVENTS.values())
_SEEN_EVENTS = 4096  # ids remembered per process, so a redelivered event counts once
_seen: OrderedDict[str, None] = OrderedDict()
_seen_lock = threading.Lock()


def _time(value: Any) -> float | None:
    """Epoch seconds from an RFC 3339 time ("...Z"), or None."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _since(event: Mapping[str, Any], start: str) -> float | None:
    end, begin = _time(event.get("time")), _time(event.get(start))
    if end is None or begin is None:
        return None
    return max(end - begin, 0.0)


def _first_time(event_id: str) -> bool:
    if not event_id:
        return True
    with _seen_lock:
        if event_id in _seen:
            return False
        _seen[event_id] = None
        if len(_seen) > _SEEN_EVENTS:
            _seen.popitem(last=False)
        return True


def observe(event: Mapping[str, Any]) -> None:
    """Count one audit event (schema version 1: docs/audit.md): verifications started, finished,
    reviewed, abandoned and recovered, link caps, ticket writes, and the four durations
    (flag -> gate, gate -> result, result -> written, flag -> outcome). An event id seen before
    in this process is not counted again; an unknown event is ignored."""
    if not _enabled or not _first_time(str(event.get("id") or "")):
        return
    kind = str(event.get("event") or "")
    desk, reason = str(event.get("desk") or ""), str(event.get("reason") or "")
    if kind == "verification.requested":
        STARTED.labels(desk, reason, str(event.get("origin") or "")).inc()
    elif kind == "verification.recovered":
        RECOVERED.labels(desk).inc()
    elif kind == "verification.sent":
        if (took := _since(event, "started_at")) is not None:
            FLAG_TO_GATE.labels(desk).observe(took)
    elif kind == "verification.review" or kind in FINAL_EVENTS:
        result = FINAL_EVENTS.get(kind, "review")
        if result == "review":
            REVIEWS.labels(desk, reason).inc()
        else:
            FINISHED.labels(desk, reason, result).inc()
            if result == "error" and (window := LINK_CAP_WINDOWS.get(str(event.get("code")))):
                LINK_CAPS.labels(desk, window).inc()
        if (took := _since(event, "sent_at")) is not None:
            GATE_TO_RESULT.labels(desk, result).observe(took)
    elif kind == "verification.abandoned":
        ABANDONED.labels(desk).inc()
    elif kind == "ticket.gate_lifted":
        GATES_LIFTED.labels(desk).inc()
    elif kind == "ticket.marker_overturned":
        MARKERS_OVERTURNED.labels(desk, str(event.get("code") or "")).inc()
    elif kind.startswith("grant."):
        GRANTS.labels(desk, reason, kind.removeprefix("grant.")).inc()
    elif kind in ("action.done", "action.failed"):
        result = "done" if kind == "action.done" else str(event.get("code") or "failed")
        IDP_ACTIONS.labels(desk, str(event.get("action") or ""), result).inc()
    elif kind in ("idp.bypass", "idp.break_glass"):
        IDP_BYPASSES.labels(
            str(event.get("idp") or ""), str(event.get("severity") or ""), str(event["action"])
        ).inc()
    elif kind == "ticket.written":
        write, state = str(event.get("code") or ""), str(event.get("state") or "")
        if write not in ("gate", "outcome"):
            return
        TICKET_WRITES.labels(desk, write, state).inc()
        if write != "outcome":
            return
        if (took := _since(event, "state_at")) is not None:
            RESULT_TO_WRITTEN.labels(desk, state).observe(took)
        if state in FINAL_STATES and (took := _since(event, "started_at")) is not None:
            FLAG_TO_OUTCOME.labels(desk, state).observe(took)


# -- exposition ------------------------------------------------------------------------------


def scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: this process's registry, or, where several processes record
    (``PROMETHEUS_MULTIPROC_DIR`` set: gunicorn's workers), a fresh registry reading every
    process's files, built per scrape as prometheus_client requires."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
