"""ServiceNow pushes (a business rule's REST message, connectors/servicenow/business_rule.js): the
signature or Basic credential, the record it names, and what makes two deliveries the same one.

- With our signature: the business rule puts a fresh ``delivery`` id (a GUID) in the signed body,
  so that id admits one delivery, whatever the timestamp (a re-signed retry too). A rule without
  it (older copies of the business rule): timestamp + body admits one; a record flagged again
  within the same second is then found by the next poll.
- With Basic auth nothing is signed and there is no timestamp: the body admits one delivery per
  ``BASIC_WINDOW_SECONDS``. A record flagged again within that window is found by the poll.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Mapping
from typing import Any

from connectors.push_dedupe import BASIC_WINDOW_SECONDS, Keys, digest, signed_window
from connectors.secret_check import matches_any, usable
from connectors.servicenow.connector import SYS_ID
from connectors.ticketing import HeaderLookup, PushAuth

SIGNATURE = "x-deskgate-signature"
TIMESTAMP = "x-deskgate-timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Deskgate's push scheme for ServiceNow: ``v1=`` + base64(HMAC-SHA256(secret,
    timestamp + "." + body)), the timestamp in unix seconds (``business_rule.js`` beside this)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + base64.b64encode(mac.digest()).decode()


def verify_push(push: PushAuth, secrets: list[str]) -> bool:
    """A signed push within the timestamp window, or Basic auth with a secret as the password
    (for REST Message records that can only do Basic; it cannot stop a replay, so prefer HMAC)."""
    signature, timestamp = push.headers.get(SIGNATURE, ""), push.headers.get(TIMESTAMP, "")
    if signature and timestamp:
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        if not math.isfinite(sent) or abs(push.now - sent) > push.tolerance_seconds:
            return False
        # Never with an empty key or password (connectors/secret_check.py).
        return matches_any(signature, [sign(s, timestamp, push.body) for s in usable(secrets)])
    authorization = push.headers.get("authorization", "")
    if authorization.startswith("Basic "):
        try:
            _, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return matches_any(password, secrets)
    return False


def pushed_ticket_ids(payload: dict[str, Any]) -> list[str]:
    """The record a business rule names: ``{"table": ..., "sys_id": ..., "number": ...}``."""
    sys_id = str(payload.get("sys_id", "")).strip()
    if not SYS_ID.fullmatch(sys_id):
        raise ValueError('body must carry "sys_id" with the record\'s 32-character sys_id')
    return [sys_id]


def push_keys(
    desk: str,
    headers: HeaderLookup,
    body: bytes,
    payload: Mapping[str, Any],
    tolerance_seconds: int,
) -> tuple[Keys, int]:
    signature, stamp = headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, "")
    if signature and stamp:  # the path verify_push took
        window = signed_window(tolerance_seconds)
        delivery = payload.get("delivery")
        if isinstance(delivery, str) and delivery:
            return [(f"{desk}:delivery:{digest(delivery.encode())}", 1)], window
        return [(f"{desk}:{digest(b'servicenow', stamp.encode(), body)}", 1)], window
    return [(f"{desk}:basic:{digest(body)}", 1)], BASIC_WINDOW_SECONDS
