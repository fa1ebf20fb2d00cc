"""What makes a desk push the same delivery as one already taken (a replayed push used to be
enqueued every time, each costing a task and a ticket read against the desk's quota).

A push is keyed on what its sender authenticated, since a replayer can change anything else: each
desk kind's ``push_keys`` (in its ``push`` module) says which keys, and how many deliveries each
admits within its window (``RedisDispatcher.send_once``). This module holds what they share.

Keys are hashes (bounded length, nothing of the body in Redis), per desk. A signed key lives as
long as its signature can be accepted: the timestamp may be up to ``tolerance`` seconds either
side of our clock, so a delivery can be replayed for up to twice that after it first arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from connectors.ticketing import HeaderLookup

# An unsigned push (no timestamp to bound a replay) admits its body once in this window.
BASIC_WINDOW_SECONDS = 60
MARGIN_SECONDS = 60  # clock steps and slow requests

Keys = list[tuple[str, int]]  # (key, deliveries it admits)

# (desk, headers, body, body parsed, tolerance seconds) -> the keys with their limits, and how
# long they live. Called only for a push its kind authenticated.
PushKeys = Callable[[str, HeaderLookup, bytes, Mapping[str, Any], int], tuple[Keys, int]]


def signed_window(tolerance_seconds: int) -> int:
    """How long a signed delivery's key must live to cover its whole acceptance window."""
    return 2 * tolerance_seconds + MARGIN_SECONDS


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:  # length-prefixed, so no two splits of the same bytes collide
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def body_keys(
    desk: str,
    headers: HeaderLookup,
    body: bytes,
    payload: Mapping[str, Any],
    tolerance_seconds: int,
) -> tuple[Keys, int]:
    """For a push nothing signs: its body, once per ``BASIC_WINDOW_SECONDS``."""
    return [(f"{desk}:body:{digest(body)}", 1)], BASIC_WINDOW_SECONDS
