"""A SIEM's event intake, as a real HTTP server: Splunk's HTTP Event Collector and a generic
signed-JSON endpoint, for Deskgate's audit forwarding (connectors/audit_sink.py).

- ``POST /services/collector/event``: ``Authorization: Splunk <token>``; the body is one or more
  concatenated JSON objects, each with an ``event``. Answers as HEC does: ``{"text": "Success",
  "code": 0}``; 401 ``{"text": "Invalid authorization", "code": 3}`` (wrong token) or 401 code 2
  (none); 400 code 6 "Invalid data format" or code 5 "No data"; 503 code 9 "Server is busy".
  While a code is set with ``PUT /_sandbox/refuse`` ``{"code": 7}`` (``null`` ends it), every
  authenticated request is answered with that code's status and text from Splunk's table of HEC
  status codes (``HEC_CODES``: 7 "Incorrect index" and 10 "Data channel is missing" are 400s
  about the token's set-up, whatever the batch holds). An event whose ``id`` is listed with
  ``PUT /_sandbox/poison`` ``{"ids": [...]}`` is one HEC cannot take: the batch is answered 400
  code 6 "Invalid data format" with ``invalid-event-number`` (the event's place in the batch,
  from 0), and, as HEC processes a batch in order and stops at the first invalid event, the
  events before it are kept (the sender sees them again when it resends: duplicates).
- ``POST /events``: a JSON array, ``X-Deskgate-Timestamp`` within ``tolerance_seconds`` and
  ``X-Deskgate-Signature: sha256=<HMAC(secret, timestamp + "." + body)>``; 401 otherwise.

Control API (beside ``sandbox.common``'s calls and faults): ``GET /_sandbox/received`` lists
what was taken, oldest first (each event with ``via``: "hec" or "json"), ``DELETE`` forgets it;
``PUT /_sandbox/down`` ``{"down": true}`` answers every intake 503 until ``{"down": false}``;
``PUT /_sandbox/refuse`` and ``PUT /_sandbox/poison`` as above (HEC only).
Connection refused is the test stopping the server (``Server.stop``) and serving the same app
again on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.common import Controls

HEC_PATH = "/services/collector/event"
JSON_PATH = "/events"
TOKEN = "sandbox-hec-token-0123456789"
SECRET = "sandbox-siem-hmac-secret-0123"


# Splunk's table of HEC status codes ("Troubleshoot HTTP Event Collector"): code -> (HTTP status,
# text). The codes a refusal can carry; 0 (Success) and 17 (healthy) are answers, not refusals.
HEC_CODES = {
    1: (403, "Token disabled"), 2: (401, "Token is required"), 3: (401, "Invalid authorization"),
    4: (403, "Invalid token"), 5: (400, "No data"), 6: (400, "Invalid data format"),
    7: (400, "Incorrect index"), 8: (500, "Internal server error"), 9: (503, "Server is busy"),
    10: (400, "Data channel is missing"), 11: (400, "Invalid data channel"),
    12: (400, "Event field is required"), 13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"), 15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
}  # fmt: skip


@dataclass
class SiemConfig:
    token: str = TOKEN
    secret: str = SECRET
    tolerance_seconds: int = 300


@dataclass
class Intake:
    received: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    refuse: int | None = None  # a HEC code every request is answered with
    poison: set[str] = field(default_factory=set)  # event ids HEC cannot take
    lock: threading.Lock = field(default_factory=threading.Lock)


def _hec(text: str, code: int, status: int, **more: Any) -> Response:
    resp = jsonify({"text": text, "code": code, **more})
    resp.status_code = status
    return resp


def _objects(raw: str) -> list[Any]:
    """HEC's body: JSON objects one after another (whitespace between them allowed)."""
    decoder, found, at = json.JSONDecoder(), list[Any](), 0
    while True:
        while at < len(raw) and raw[at].isspace():
            at += 1
        if at == len(raw):
            return found
        value, at = decoder.raw_decode(raw, at)
        found.append(value)


def create_app(config: SiemConfig | None = None) -> Flask:
    config = config or SiemConfig()
    app = Flask("sandbox-siem")
    intake = Intake()
    app.extensions["siem_intake"] = intake
    Controls("siem", lambda status, text: _hec(text, 9, status)).install(app)

    @app.post(HEC_PATH)
    def hec() -> Response:
        if intake.down:
            return _hec("Server is busy", 9, 503)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Splunk "):
            return _hec("Token is required", 2, 401)
        if not hmac.compare_digest(auth.removeprefix("Splunk ").encode(), config.token.encode()):
            return _hec("Invalid authorization", 3, 401)
        if intake.refuse is not None:
            status, text = HEC_CODES[intake.refuse]
            return _hec(text, intake.refuse, status)
        raw = request.get_data(as_text=True)
        try:
            objects = _objects(raw)
        except ValueError:
            return _hec("Invalid data format", 6, 400)
        if not objects:
            return _hec("No data", 5, 400)
        if not all(isinstance(o, dict) and isinstance(o.get("event"), dict) for o in objects):
            return _hec("Event field is required", 12, 400)
        bad = next(
            (n for n, o in enumerate(objects) if o["event"].get("id") in intake.poison), None
        )
        with intake.lock:  # the events before an invalid one are taken
            kept = objects if bad is None else objects[:bad]
            intake.received.extend({**o["event"], "via": "hec", "hec": o} for o in kept)
        if bad is not None:
            return _hec("Invalid data format", 6, 400, **{"invalid-event-number": bad})
        return _hec("Success", 0, 200)

    @app.post(JSON_PATH)
    def signed_json() -> Response:
        if intake.down:
            return _hec("Server is busy", 9, 503)
        stamp = request.headers.get("X-Deskgate-Timestamp", "")
        given = request.headers.get("X-Deskgate-Signature", "")
        raw = request.get_data()
        try:
            fresh = abs(time.time() - int(stamp)) <= config.tolerance_seconds
        except ValueError:
            fresh = False
        mac = hmac.new(config.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256)
        if not fresh or not hmac.compare_digest(
            given.encode(), f"sha256={mac.hexdigest()}".encode()
        ):
            return _hec("signature missing, invalid or outside the timestamp window", 3, 401)
        try:
            events = json.loads(raw)
        except ValueError:
            return _hec("Invalid data format", 6, 400)
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            return _hec("body must be a JSON array of objects", 6, 400)
        with intake.lock:
            intake.received.extend({**e, "via": "json"} for e in events)
        return _hec("Success", 0, 200)

    @app.route("/_sandbox/received", methods=["GET", "DELETE"])
    def received() -> Response:
        with intake.lock:
            if request.method == "DELETE":
                intake.received.clear()
            return jsonify({"events": list(intake.received)})

    @app.put("/_sandbox/refuse")
    def refuse() -> Response:
        code = (request.get_json(force=True) or {}).get("code")
        if code is not None and code not in HEC_CODES:
            return _hec(f"not a HEC refusal code: {code!r}", 6, 400)
        intake.refuse = code
        return jsonify({"refuse": code})

    @app.put("/_sandbox/poison")
    def poison() -> Response:
        intake.poison = set((request.get_json(force=True) or {}).get("ids") or ())
        return jsonify({"poison": sorted(intake.poison)})

    @app.put("/_sandbox/down")
    def down() -> Response:
        intake.down = bool((request.get_json(force=True) or {}).get("down"))
        return jsonify({"down": intake.down})

    return app


def config_text(url: str, fmt: str = "splunk_hec", batch_size: int = 100) -> str:
    """Deskgate's ``[audit_sink]`` block for a SIEM simulator at ``url`` (secrets: ``SECRETS``)."""
    target = url if fmt == "splunk_hec" else url + JSON_PATH
    return f"""
[audit_sink]
url = "{target}"
format = "{fmt}"
batch_size = {batch_size}
retry_max_seconds = 4
timeout_seconds = 3
"""


SECRETS = {
    "DESKGATE_AUDIT_SINK__TOKEN": TOKEN,
    "DESKGATE_AUDIT_SINK__SECRET": SECRET,
}
