"""What makes a desk push the same delivery as one already taken (finding: a replayed push was
enqueued every time, each costing a task and a ticket read against the desk's quota).

A push is keyed on what its sender authenticated, since a replayer can change anything else:

- Zendesk signs timestamp + body, so that pair is one delivery. The
  ``X-Zendesk-Webhook-Invocation-Id`` is taken too where sent (a retry of one invocation), but
  never alone: it is not signed, and a replayer could send a fresh one each time.
- ServiceNow with our signature: timestamp + body, likewise.
- ServiceNow with Basic auth signs nothing and has no timestamp: the body alone, for a short
  window (``BASIC_WINDOW_SECONDS``). A replay costs at most one task per body per window; a record
  flagged again within the window is found by the next poll instead.

Keys are hashes (bounded length, nothing of the body in Redis), per desk. A signed key lives as
long as its signature can be accepted: the timestamp may be up to ``tolerance`` seconds either
side of our clock, so a delivery can be replayed for up to twice that after it first arrived.
"""

from __future__ import annotations

import hashlib

from connectors import servicenow, zendesk
from connectors.ticketing import HeaderLookup

BASIC_WINDOW_SECONDS = 60
MARGIN_SECONDS = 60  # clock steps and slow requests


def signed_window(tolerance_seconds: int) -> int:
    """How long a signed delivery's key must live to cover its whole acceptance window."""
    return 2 * tolerance_seconds + MARGIN_SECONDS


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:  # length-prefixed, so no two splits of the same bytes collide
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def push_keys(
    kind: str, desk: str, headers: HeaderLookup, body: bytes, tolerance_seconds: int
) -> tuple[list[str], int]:
    """The dedupe keys (under ``seen:push``) of an authenticated push, and how long they live."""
    window = signed_window(tolerance_seconds)
    if kind == "zendesk":
        stamp = headers.get(zendesk.TIMESTAMP.lower(), "")
        keys = [f"{desk}:{_digest(b'zendesk', stamp.encode(), body)}"]
        invocation = headers.get("x-zendesk-webhook-invocation-id", "")
        if invocation:
            keys.append(f"{desk}:inv:{_digest(invocation.encode())}")
        return keys, window
    if kind == "servicenow":
        signature = headers.get(servicenow.SIGNATURE, "")
        stamp = headers.get(servicenow.TIMESTAMP, "")
        if signature and stamp:  # the path verify_push took
            return [f"{desk}:{_digest(b'servicenow', stamp.encode(), body)}"], window
        return [f"{desk}:basic:{_digest(body)}"], BASIC_WINDOW_SECONDS
    # A kind without a rule of its own yet: its body, briefly, as for an unsigned push.
    return [f"{desk}:body:{_digest(body)}"], BASIC_WINDOW_SECONDS
