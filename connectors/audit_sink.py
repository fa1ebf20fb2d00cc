"""A SIEM's HTTP endpoint for Deskgate's audit events (docs/audit.md, "Forwarding to a SIEM").

- ``splunk_hec``: Splunk's HTTP Event Collector. ``POST /services/collector/event`` with
  ``Authorization: Splunk <token>``; the body is the events as concatenated JSON objects, each
  ``{"time": epoch seconds, "host", "source", "sourcetype", "event": {...}}``.
- ``json_hmac``: any endpoint taking a JSON array of events, signed: ``X-Deskgate-Timestamp``
  (epoch seconds) and ``X-Deskgate-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." +
  body>``. The receiver recomputes it with the shared secret, compares in constant time and
  refuses a timestamp far from its clock (a replay).

``send`` raises ``connectors.http``'s typed errors; anything but a 2xx is a failure and the
batch is sent again later (at-least-once: the event ids tell duplicates apart).
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

from config.settings import AuditSinkConfig
from connectors.http import new_client, request

SYSTEM = "audit sink"
HEC_PATH = "/services/collector/event"
SIGNATURE_HEADER = "X-Deskgate-Signature"
TIMESTAMP_HEADER = "X-Deskgate-Timestamp"
SOURCE = "deskgate"
SOURCETYPE = "deskgate:audit"


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
        request(
            self.client, SYSTEM, "POST", self.path, _describe, content=body,
            headers=headers,
        )  # fmt: skip

    def close(self) -> None:
        self.client.close()
