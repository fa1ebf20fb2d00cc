"""What makes a desk push the same delivery as one already taken (a replayed push used to be
enqueued every time, each costing a task and a ticket read against the desk's quota).

A push is keyed on what its sender authenticated, since a replayer can change anything else. Each
key admits a number of deliveries within its window (``RedisDispatcher.send_once``):

- Zendesk signs timestamp + body, to the second, and the body is the trigger's template
  (``{"ticket_id": "42"}``): two firings for one ticket within a second carry the same signed
  bytes. ``X-Zendesk-Webhook-Invocation-Id`` tells them apart but is not signed. So: the
  invocation id admits one delivery (a retry of one invocation is a duplicate), and the signed
  content admits ``SAME_CONTENT_FIRINGS`` under distinct invocation ids, or one without any. A
  verbatim replay, or one with the id stripped, is a duplicate; one with made-up ids costs at most
  ``SAME_CONTENT_FIRINGS`` tasks per captured push, not one per request.
- ServiceNow with our signature: the business rule puts a fresh ``delivery`` id (a GUID) in the
  signed body, so that id admits one delivery, whatever the timestamp (a re-signed retry too).
  A rule without it (older copies of docs/servicenow-business-rule.js): timestamp + body admits
  one; a record flagged again within the same second is then found by the next poll.
- ServiceNow with Basic auth signs nothing and has no timestamp: the body admits one delivery
  per ``BASIC_WINDOW_SECONDS``. A record flagged again within that window is found by the poll.

Keys are hashes (bounded length, nothing of the body in Redis), per desk. A signed key lives as
long as its signature can be accepted: the timestamp may be up to ``tolerance`` seconds either
side of our clock, so a delivery can be replayed for up to twice that after it first arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from connectors import servicenow, zendesk
from connectors.ticketing import HeaderLookup

BASIC_WINDOW_SECONDS = 60
MARGIN_SECONDS = 60  # clock steps and slow requests
# A ticket fires once per verification lifecycle; the sandbox runs several lifecycles a second.
SAME_CONTENT_FIRINGS = 5
INVOCATION = "x-zendesk-webhook-invocation-id"

Keys = list[tuple[str, int]]  # (key, deliveries it admits)


def signed_window(tolerance_seconds: int) -> int:
    """How long a signed delivery's key must live to cover its whole acceptance window."""
    return 2 * tolerance_seconds + MARGIN_SECONDS


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:  # length-prefixed, so no two splits of the same bytes collide
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def push_keys(
    kind: str,
    desk: str,
    headers: HeaderLookup,
    body: bytes,
    payload: Mapping[str, Any],
    tolerance_seconds: int,
) -> tuple[Keys, int]:
    """The dedupe keys of an authenticated push with their limits, and how long they live.
    ``payload`` is ``body`` parsed."""
    window = signed_window(tolerance_seconds)
    if kind == "zendesk":
        stamp = headers.get(zendesk.TIMESTAMP.lower(), "")
        content = f"{desk}:{_digest(b'zendesk', stamp.encode(), body)}"
        invocation = headers.get(INVOCATION, "")
        if not invocation:
            return [(content, 1)], window
        return [
            (f"{desk}:inv:{_digest(invocation.encode())}", 1),
            (content, SAME_CONTENT_FIRINGS),
        ], window
    if kind == "servicenow":
        signature = headers.get(servicenow.SIGNATURE, "")
        stamp = headers.get(servicenow.TIMESTAMP, "")
        if signature and stamp:  # the path verify_push took
            delivery = payload.get("delivery")
            if isinstance(delivery, str) and delivery:
                return [(f"{desk}:delivery:{_digest(delivery.encode())}", 1)], window
            return [(f"{desk}:{_digest(b'servicenow', stamp.encode(), body)}", 1)], window
        return [(f"{desk}:basic:{_digest(body)}", 1)], BASIC_WINDOW_SECONDS
    # A kind without a rule of its own yet: its body, briefly, as for an unsigned push.
    return [(f"{desk}:body:{_digest(body)}", 1)], BASIC_WINDOW_SECONDS
