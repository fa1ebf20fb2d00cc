"""The Flask app factory: inbound webhooks and health checks.

Serve it with gunicorn (``gunicorn 'webhooks.app:create_app()'``, or ``deskgate web``). Requests
never call an outside API: they authenticate, parse, dedupe and enqueue ids, then answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from flask import Flask, Response, g, jsonify, request
from kombu.exceptions import OperationalError
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from config import metrics
from config.settings import Settings
from connectors import http
from webhooks.deadline import BodyDeadline
from webhooks.health import health
from webhooks.inbound import Inbound, inbound
from webhooks.metrics import DeliveryMetrics, metrics_page
from webhooks.metrics import initialise as initialise_metrics
from webhooks.oauth import incode_oauth
from worker.audit.chain import Chain
from worker.celery_app import TRANSPORT_OPTIONS
from worker.dispatch import RedisDispatcher, queue_key
from worker.lifecycle.store import Store
from worker.live_settings import LiveSettings
from worker.redis_client import connect
from worker.runtime import live_settings

log = structlog.get_logger("deskgate.webhooks")


def _fixed(settings: Settings) -> Callable[[], Settings]:
    return lambda: settings


def create_app(settings: Settings | LiveSettings | None = None) -> Flask:
    """The app for ``settings`` as given, or for settings re-read while it runs (a
    ``LiveSettings``; by default this process's). What is built here (the Redis client, the
    body limits) keeps the values it started with; the rest, secrets included, is read per
    request."""
    source = live_settings() if settings is None else settings
    current = source.get if isinstance(source, LiveSettings) else _fixed(source)
    settings = current()
    metrics.set_enabled(settings.metrics_enabled)
    initialise_metrics()
    app = Flask("deskgate")
    # Werkzeug answers 413 for larger bodies before any handler reads them.
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    redis: Redis[str] = connect(settings.redis_url, socket_timeout=5)
    store = Store(
        redis, settings.key_prefix, settings.retention_days * 86400, chain=Chain.of(settings)
    )
    # Enqueue with one LPUSH on the store's client rather than Celery's send_task, whose Redis
    # transport builds a client per publish (worker/dispatch.py): the enqueue was half a request.
    key = queue_key(settings.queue, TRANSPORT_OPTIONS)
    dispatcher = RedisDispatcher(redis, settings.queue, key)
    app.extensions["deskgate"] = Inbound(current, store, dispatcher)
    app.register_blueprint(inbound)
    app.register_blueprint(incode_oauth)
    app.register_blueprint(health)
    app.register_blueprint(metrics_page)
    app.wsgi_app = DeliveryMetrics(  # type: ignore[method-assign]
        BodyDeadline(
            app.wsgi_app, settings.webhook_body_timeout_seconds, settings.webhook_max_body_bytes
        )
    )

    @app.before_request
    def _request_id() -> None:
        # The sender's id if it is a safe one, else ours: in every log line of this request and
        # in the tasks it enqueues (worker/dispatch.py), so the worker's calls carry it too.
        g.request_id = http.accepted_request_id(request.headers.get(http.REQUEST_ID_HEADER))
        g.request_id_set = http.request_id.set(g.request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.teardown_request
    def _forget_request_id(_: BaseException | None) -> None:
        # The thread (or greenlet) serves other requests next: none may inherit this one's id.
        if "request_id_set" in g:
            http.request_id.reset(g.pop("request_id_set"))
            structlog.contextvars.unbind_contextvars("request_id")

    @app.after_request
    def _answer_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[http.REQUEST_ID_HEADER] = g.request_id
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        # Every refusal is JSON with a reason, so callers can tell what to fix.
        body = {"error": (exc.name or "error").lower().replace(" ", "_"), "reason": exc.description}
        return jsonify(body), exc.code or 500

    @app.errorhandler(RedisError)
    @app.errorhandler(OperationalError)
    def _unavailable(exc: Exception) -> Any:
        # Redis (the store and the queue) is down: nothing was taken, so the sender must retry.
        log.error("redis unavailable; refusing a delivery for now", error=type(exc).__name__)
        body = {"error": "unavailable", "reason": "storage is unavailable; retry later"}
        return jsonify(body), 503, {"Retry-After": "30"}

    return app
