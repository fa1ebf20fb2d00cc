"""A SIEM's HTTP endpoint for Deskgate's audit events (docs/audit.md, "Forwarding to a SIEM").

- ``splunk_hec``: Splunk's HTTP Event Collector. ``POST /services/collector/event`` with
  ``Authorization: Splunk <token>``; the body is the events as concatenated JSON objects, each
  ``{"time": epoch seconds, "host", "source", "sourcetype", "event": {...}}``.
- ``json_hmac``: any endpoint taking a JSON array of events, signed: ``X-Deskgate-Timestamp``
  (epoch seconds) and ``X-Deskgate-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." +
  body>``. The receiver recomputes it with the shared secret, compares in constant time and
  refuses a timestamp far from its clock (a replay).

``send`` raises ``connectors.http``'s typed errors; anything but a 2xx is a failure and the
batch is sent again later (at-least-once: the event ids tell duplicates apart). Two refusals are
told apart for the forwarder: ``ContentRefused`` (what this batch holds) and ``Misconfigured``
(the receiver's own set-up: no batch passes until it is fixed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from config.privacy import scrub
from config.settings import AuditSinkConfig
from connectors.http import Fatal, new_client, request

SYSTEM = "audit sink"
HEC_PATH = "/services/collector/event"
SIGNATURE_HEADER = "X-Deskgate-Signature"
TIMESTAMP_HEADER = "X-Deskgate-Timestamp"
SOURCE = "deskgate"
SOURCETYPE = "deskgate:audit"


# Splunk documents a status code in every HEC answer's body ({"text": ..., "code": n}; the table
# in "Troubleshoot HTTP Event Collector"). These describe the receiver's set-up, not the events:
# an index the token may not write, indexer acknowledgement turned on for the token (it then
# wants a channel Deskgate does not send), query-string tokens off. The token's own codes (1-4:
# disabled, missing, invalid) come with 401/403, which ``classify`` makes ``AuthFailed``.
HEC_CONFIGURATION = {
    7: "Incorrect index", 10: "Data channel is missing", 11: "Invalid data channel",
    14: "ACK is disabled", 16: "Query string authorization is not enabled",
}  # fmt: skip
# These are about what was sent: the batch, or one event in it.
HEC_CONTENT = {
    5: "No data", 6: "Invalid data format", 12: "Event field is required",
    13: "Event field cannot be blank", 15: "Error in handling indexed fields",
}  # fmt: skip
CONTENT_STATUSES = frozenset({400, 413, 422})  # without a code: "this content is wrong"


class ContentRefused(Fatal):
    """The receiver refuses what this batch holds (an event it cannot parse, a batch too large):
    another batch may pass. The forwarder splits the batch to find the event (worker/
    audit_forwarder.py)."""


class Misconfigured(Fatal):
    """The receiver refuses on grounds of its own configuration (HEC's index, channel or token
    codes): no batch passes until it is fixed there, so nothing is set aside."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _describe(response: httpx.Response) -> str:
    # HEC answers {"text": ..., "code": n}; a generic endpoint anything. Only a short text.
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("text", ""))[:200] if isinstance(body, dict) else ""


def _hec_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _check(response: httpx.Response, hec: bool) -> None:
    """Tell a refusal of the content from one of the receiver's configuration: HEC's code decides
    where it gives one (a generic endpoint's codes mean nothing to us), else the status (400,
    413, 422: content). Other answers are left to ``connectors.http.classify`` (401/403
    ``AuthFailed``, 404 ``NotFound``, 5xx ``Retriable``...)."""
    status = response.status_code
    if status not in CONTENT_STATUSES:
        return
    code = _hec_code(response) if hec else None
    if code in HEC_CONFIGURATION:
        raise Misconfigured(SYSTEM, f"HEC code {code}: {HEC_CONFIGURATION[code]}", status)
    known = HEC_CONTENT.get(code) if code is not None else None
    reason = f"HEC code {code}: {known}" if known else scrub(_describe(response))
    raise ContentRefused(SYSTEM, reason or "refused the batch's content", status)


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class AuditSink:
    def __init__(self, config: AuditSinkConfig) -> None:
        self.config = config
        url = urlsplit(config.base)
        # The client's base is the origin alone: httpx would add a "/" to a base with a path.
        origin, path = f"{url.scheme}://{url.netloc}", url.path.rstrip("/")
        if config.format == "splunk_hec":  # the HEC's base, or its event endpoint itself
            path = path.removesuffix(HEC_PATH) + HEC_PATH
        self.path = path or "/"
        self.client = new_client(
            origin, config.timeout_seconds, deadline=config.timeout_seconds * 2
        )

    def body(self, events: Sequence[dict[str, Any]], now: float) -> tuple[bytes, dict[str, str]]:
        """The request body and its authentication headers."""
        if self.config.format == "splunk_hec":
            assert self.config.token is not None  # the settings require it for this format
            body = "".join(
                json.dumps(
                    {
                        "time": round(_epoch(e["time"]), 3),
                        "host": self.config.host,
                        "source": SOURCE,
                        "sourcetype": SOURCETYPE,
                        "event": e,
                    },
                    separators=(",", ":"),
                )
                for e in events
            ).encode()
            return body, {"Authorization": f"Splunk {self.config.token.get_secret_value()}"}
        assert self.config.secret is not None
        body = json.dumps(list(events), separators=(",", ":")).encode()
        stamp = str(int(now))
        sig = signature(self.config.secret.get_secret_value(), stamp, body)
        return body, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sig}

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """Deliver ``events`` in one request; raises (``Retriable``, ``Fatal``...) unless 2xx."""
        body, headers = self.body(events, time.time())
        headers["Content-Type"] = "application/json"
        hec = self.config.format == "splunk_hec"
        request(
            self.client, SYSTEM, "POST", self.path, _describe,
            check=lambda response: _check(response, hec), content=body, headers=headers,
        )  # fmt: skip

    def close(self) -> None:
        self.client.close()
