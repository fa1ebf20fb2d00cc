"""The yardstick for the webhook benchmark: a Flask endpoint that reads the body and answers
202-style JSON, and nothing else. Served by gunicorn with the webhook app's exact settings, so
the ratio between the two is what Deskgate's own work (authenticate, parse, dedupe, enqueue)
costs. ``gunicorn 'bench.bare_app:create_app()'``."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/bare")
    def bare() -> Response:
        request.get_data(cache=False)
        return jsonify({"status": "accepted"})

    return app
