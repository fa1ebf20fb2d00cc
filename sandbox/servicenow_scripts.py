"""Server-side scripts in the ServiceNow simulator: business rules (``sys_script``) and UI actions
(``sys_ui_action``) run in an embedded ES5 engine (Duktape, through dukpy) with the Glide shims of
``servicenow_glide.js``, so the script ``deskgate setup`` installs is the one that runs here.

``run`` takes the record as the platform hands it to a script and gives back what the script did:
whether its condition held, the record's values afterwards, whether it asked to save
(``current.update()``), and the REST requests it sent asynchronously (sent after the transaction).
A script that throws is logged and changes nothing, as the platform logs and carries on.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dukpy
import httpx

GLIDE = (Path(__file__).with_name("servicenow_glide.js")).read_text(encoding="utf-8")
MAC_ALGORITHMS = {"HmacSHA256": "sha256", "HmacSHA1": "sha1", "HmacMD5": "md5",
                  "HmacSHA512": "sha512", "HmacSHA384": "sha384"}  # fmt: skip
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Outbound:
    """A request a script made with ``RESTMessageV2``."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    timeout: float


@dataclass
class Host:
    """What a script reaches outside its record: properties, the log, the network."""

    user: str
    property: Callable[[str], str | None]
    log: Callable[[str, str], None]
    http: httpx.Client | None = None  # for execute(); None: execute() answers a connect error
    sent_later: list[Outbound] = field(default_factory=list)  # executeAsync(), in order


@dataclass(frozen=True)
class Outcome:
    ran: bool  # the condition held (or there was none) and the script ran without throwing
    values: dict[str, str]
    saved: bool  # the script called current.update()


def mac(key_b64: str, algorithm: str, data: str) -> str:
    """GlideCertificateEncryption.generateMac: the key arrives base64-encoded and is decoded to
    the bytes it stands for; the data's UTF-8 bytes are MACed; the MAC is returned base64."""
    digest = MAC_ALGORITHMS.get(algorithm)
    if digest is None:
        raise ValueError(f"unsupported MAC algorithm {algorithm!r}")
    key = base64.b64decode(key_b64, validate=True)
    return base64.b64encode(hmac.new(key, data.encode(), digest).digest()).decode()


def _request(call: dict[str, Any]) -> Outbound:
    return Outbound(
        method=str(call.get("method", "get")).upper(),
        url=str(call.get("endpoint", "")),
        headers={str(k): str(v) for k, v in dict(call.get("headers") or {}).items()},
        body=str(call.get("body", "")),
        timeout=float(call.get("timeout") or 60000) / 1000,
    )


def _execute(host: Host, call: dict[str, Any]) -> dict[str, Any]:
    out = _request(call)
    if host.http is None:
        return {"status": 0, "body": "", "headers": {}, "error": "no network for scripts"}
    try:
        response = host.http.request(
            out.method, out.url, content=out.body.encode(), headers=out.headers, timeout=out.timeout
        )
    except httpx.HTTPError as exc:
        return {"status": 0, "body": "", "headers": {}, "error": f"{type(exc).__name__}: {exc}"}
    headers = {k.lower(): v for k, v in response.headers.items()}
    return {"status": response.status_code, "body": response.text, "headers": headers,
            "error": None if response.status_code < 400 else response.reason_phrase}  # fmt: skip


def _later(host: Host, call: dict[str, Any]) -> dict[str, Any]:
    host.sent_later.append(_request(call))
    return {"status": 0, "body": "", "headers": {}, "error": None}


def _interpreter(host: Host) -> dukpy.JSInterpreter:
    js = dukpy.JSInterpreter()
    exports: dict[str, Callable[..., Any]] = {
        "glide.property": host.property,
        "glide.guid": lambda: uuid.uuid4().hex,
        "glide.log": host.log,
        "glide.now_ms": lambda: int(time.time() * 1000),
        "glide.format_ms": lambda ms: datetime.fromtimestamp(ms / 1000, UTC).strftime(TIME_FORMAT),
        "glide.b64encode": lambda s: base64.b64encode(s.encode()).decode(),
        "glide.b64decode": lambda s: base64.b64decode(s).decode(errors="replace"),
        "glide.mac": mac,
        "glide.rest": lambda call: _execute(host, call),
        "glide.rest_async": lambda call: _later(host, call),
    }
    for name, function in exports.items():
        js.export_function(name, function)
    return js


def run(
    script: str,
    *,
    host: Host,
    table: str,
    record: dict[str, str],
    previous: dict[str, str] | None,
    booleans: list[str],
    condition: str = "",
) -> Outcome:
    """Run ``script`` (and first ``condition``, a JavaScript expression) with ``current`` bound
    to ``record`` and ``previous`` to the values before this change (None on insert)."""
    program = (
        f"{GLIDE}\n"
        f"var __ok = (function () {{ return !!({condition.strip() or 'true'}); }})();\n"
        f"if (__ok) {{ (function () {{\n{script}\n}})(); }}\n"
        "[__ok, current._dump(), __dg.saved];"
    )
    try:
        ok, values, saved = _interpreter(host).evaljs(
            program, table=table, record=dict(record), previous=previous, booleans=booleans,
            user=host.user,
        )  # fmt: skip
    except dukpy.JSRuntimeError as exc:
        host.log("error", f"script error: {exc}")
        return Outcome(False, dict(record), False)
    return Outcome(bool(ok), {str(k): "" if v is None else str(v) for k, v in values.items()},
                   bool(saved))  # fmt: skip


def body_fields(body: str) -> dict[str, str]:
    """The record a push body names (table, sys_id, number), for the delivery log."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(data.get(k, "")) for k in ("table", "sys_id", "number")}
