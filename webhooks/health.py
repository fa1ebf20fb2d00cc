"""Liveness and readiness: ``/healthz`` answers while the process runs, ``/readyz`` while Redis
(the queue and the lifecycle store) answers too."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Any:
    try:
        current_app.extensions["deskgate"].store.redis.ping()
    except RedisError:
        return jsonify({"status": "unavailable", "reason": "Redis does not answer"}), 503
    return jsonify({"status": "ok"})
