"""Zendesk's webhooks: the signature, the ticket a trigger names, and what makes two deliveries
the same one.

Zendesk signs timestamp + body, to the second, and the body is the trigger's template
(``{"ticket_id": "42"}``): two firings for one ticket within a second carry the same signed
bytes. ``X-Zendesk-Webhook-Invocation-Id`` tells them apart but is not signed. So: the invocation
id admits one delivery (a retry of one invocation is a duplicate), and the signed content admits
``SAME_CONTENT_FIRINGS`` under distinct invocation ids, or one without any. A verbatim replay, or
one with the id stripped, is a duplicate; one with made-up ids costs at most
``SAME_CONTENT_FIRINGS`` tasks per captured push, not one per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.push_dedupe import Keys, digest, signed_window
from connectors.secret_check import matches_any, usable
from connectors.ticketing import HeaderLookup, PushAuth

SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"
# A ticket fires once per verification lifecycle; the sandbox runs several lifecycles a second.
SAME_CONTENT_FIRINGS = 5


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's webhook signature: base64(HMAC-SHA256(secret, timestamp + body)).

    The secret is used verbatim as key bytes (not base64-decoded), as Zendesk's own example does.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def verify_push(push: PushAuth, secrets: list[str]) -> bool:
    """True if the push is signed by one of ``secrets`` within the timestamp window."""
    signature = push.headers.get(SIGNATURE.lower(), "")
    timestamp = push.headers.get(TIMESTAMP.lower(), "")
    if not signature or not timestamp:
        return False
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    if abs(push.now - sent) > push.tolerance_seconds:
        return False
    # Never with an empty key: anyone can sign with that (connectors/secret_check.py).
    return matches_any(signature, [sign(s, timestamp, push.body) for s in usable(secrets)])


def pushed_ticket_ids(payload: dict[str, Any]) -> list[str]:
    """The ticket a trigger's webhook names: ``{"ticket_id": "{{ticket.id}}"}``."""
    value = str(payload.get("ticket_id", "")).strip()
    if not value.isdigit():
        raise ValueError('body must carry "ticket_id" with the ticket\'s numeric id')
    return [value]


def push_keys(
    desk: str,
    headers: HeaderLookup,
    body: bytes,
    payload: Mapping[str, Any],
    tolerance_seconds: int,
) -> tuple[Keys, int]:
    window = signed_window(tolerance_seconds)
    stamp = headers.get(TIMESTAMP.lower(), "")
    content = f"{desk}:{digest(b'zendesk', stamp.encode(), body)}"
    invocation = headers.get(INVOCATION.lower(), "")
    if not invocation:
        return [(content, 1)], window
    return [
        (f"{desk}:inv:{digest(invocation.encode())}", 1),
        (content, SAME_CONTENT_FIRINGS),
    ], window
