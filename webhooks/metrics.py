"""Prometheus on the web app: ``GET /metrics`` for a bearer of ``metrics_token``, and the count
of every webhook delivery by endpoint and result (``deskgate_webhook_deliveries_total``).

``/metrics`` shares the port of the public webhooks, so it answers only to
``Authorization: Bearer <metrics_token>`` (compared in constant time); with no token configured
it is off (404). Counts cover every gunicorn worker: ``webhooks/gunicorn_conf.py`` gives them one
``PROMETHEUS_MULTIPROC_DIR`` and each scrape reads all their files (``config.metrics``).

Deliveries are counted in a WSGI wrapper around the whole app, so refusals that never reach a
view (408 from the body deadline, 413, an unknown path) are counted too. Endpoints are a fixed
set (the desk kinds' push endpoints, ``incode``, ``incode_token``, else ``other``): a request to
a made-up path or kind adds no label value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config import metrics
from connectors.registry import KINDS
from connectors.secret_check import matches_any
from webhooks.oauth import bearer_of

metrics_page = Blueprint("metrics", __name__)

# What a view sets when a 2xx is not an acceptance: "duplicate", "ignored", "unknown_session".
RESULT = "deskgate.delivery"
ENDPOINTS = {
    **{f"/webhooks/{kind}": kind for kind in KINDS},
    "/webhooks/incode": "incode",
    "/webhooks/incode/token": "incode_token",
}
REFUSALS = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}

# What views mark (``mark``): a 2xx that is not an acceptance.
MARKS = ("duplicate", "ignored", "unknown_session")


def endpoint_of(path: str) -> str:
    """The endpoint label: a desk's own endpoint (``/webhooks/<kind>/<desk>``) counts as its
    kind's, so the label values stay the kinds whatever desk name a caller makes up."""
    if path in ENDPOINTS:
        return ENDPOINTS[path]
    kind, slash, _ = path.removeprefix("/webhooks/").partition("/")
    return kind if slash and kind in KINDS else "other"


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mark(result: str) -> None:
    """Record why this request's 2xx is not an acceptance (``RESULT``)."""
    request.environ[RESULT] = result


def result_of(status: int, marked: str | None) -> tuple[str, str]:
    """(result, reason) for a delivery answered ``status``."""
    if status < 400:
        return marked or "accepted", ""
    if status in REFUSALS:
        return "refused", REFUSALS[status]
    return ("refused", "other") if status < 500 else ("error", "server_error")


def outcomes() -> list[tuple[str, str]]:
    """Every (result, reason) ``result_of`` can answer."""
    refusals = [("refused", reason) for reason in (*REFUSALS.values(), "other")]
    return [("accepted", ""), *((m, "") for m in MARKS), *refusals, ("error", "server_error")]


def initialise() -> None:
    """Create every delivery series at 0 (each endpoint, each outcome), so dashboards and
    ``absent()`` alerts see them from start-up, not from the first delivery. Each gunicorn worker
    runs it (``create_app``), into its own file; a scrape adds them up."""
    if not metrics.enabled():
        return
    for endpoint in (*ENDPOINTS.values(), "other"):
        for result, reason in outcomes():
            metrics.DELIVERIES.labels(endpoint, result, reason)


class DeliveryMetrics:
    """Counts each request to ``/webhooks/...`` by endpoint and result once it is answered."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/webhooks/") or not metrics.enabled():
            return self.app(environ, start_response)
        endpoint = endpoint_of(path)

        def counted(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            try:
                code = int(status.split(" ", 1)[0])
            except ValueError:
                code = 500
            metrics.delivery(endpoint, *result_of(code, environ.get(RESULT)))
            return start_response(status, headers, *exc_info)

        return self.app(environ, counted)


@metrics_page.get("/metrics")
def scrape() -> Response:
    settings = current_app.extensions["deskgate"].settings
    if settings.metrics_token is None:
        abort(404, "metrics are off: set metrics_token to serve them")
    tokens = [
        t.get_secret_value() for t in (settings.metrics_token, settings.metrics_previous_token) if t
    ]
    if not matches_any(bearer_of(request.headers), tokens):
        abort(401, "Authorization: Bearer <metrics_token> missing or wrong")
    return Response(generate_latest(metrics.scrape_registry()), mimetype=CONTENT_TYPE_LATEST)
