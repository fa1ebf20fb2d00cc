"""The Okta simulator's System Log (``GET /api/v1/logs``), modelled on Okta's API reference.

- Every event is a LogEvent: ``uuid``, ``published``, ``eventType``, ``displayMessage``,
  ``actor``, ``client``, ``transaction``, ``debugContext.debugData``, ``target``, ``outcome``.
- Okta documents that events are persisted some time after they happen: an event becomes
  visible ``delay`` seconds after it is recorded.
- A polling request (``since`` and no ``until``, ascending order) is filtered by persistence
  time and always answers a ``Link: <…after=…>; rel="next"``, even when empty, so a poller
  keeps that link as its cursor. A bounded request (``until`` given) is ordered by
  ``published`` and ends when there is no ``next``.
- ``filter`` takes SCIM ``eq`` conditions joined by ``and`` on the fields Deskgate and bypass
  detection use (``eventType``, ``target.id``, ``actor.id``); anything else is refused with
  Okta's validation error, strict where the documentation leaves room.
- Retention is 90 days; ``since`` more than 180 days back is refused (``E0000053``).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RETENTION_SECONDS = 90 * 86400
MAX_SINCE_SECONDS = 180 * 86400
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_CONDITION = re.compile(r'^\s*(eventType|target\.id|actor\.id)\s+eq\s+"([^"]*)"\s*$')


def iso(at: float) -> str:
    """Okta's timestamps: ISO 8601, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class LogQueryError(ValueError):
    """A query Okta refuses: ``code`` is its errorCode."""

    def __init__(self, code: str, summary: str) -> None:
        super().__init__(summary)
        self.code = code


@dataclass
class Stored:
    event: dict[str, Any]
    published: float
    persisted: float
    seq: int


@dataclass
class SystemLog:
    delay: float = 0.0  # seconds between an event and its persistence (Okta: "events are late")
    events: list[Stored] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        event_type: str,
        actor: dict[str, Any],
        client: dict[str, Any],
        target: dict[str, Any] | None,
        *,
        message: str,
        request_id: str,
        transaction: dict[str, Any],
        debug: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        published = now if at is None else at
        event: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "published": iso(published),
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "legacyEventType": None,
            "displayMessage": message,
            "actor": actor,
            "client": client,
            "device": None,
            "authenticationContext": {"externalSessionId": None, "authenticationStep": 0},
            "securityContext": {},
            "outcome": {"result": "SUCCESS", "reason": None},
            "target": [target] if target else [],
            "transaction": transaction,
            "debugContext": {"debugData": {"requestId": request_id, **(debug or {})}},
            "request": {"ipChain": []},
        }
        with self.lock:
            self.events.append(Stored(event, published, now + self.delay, len(self.events)))
        return event

    def everything(self) -> list[dict[str, Any]]:
        """Every event, persisted or not (the control API's view)."""
        with self.lock:
            return [s.event for s in self.events]

    def query(self, args: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        """The page for ``args`` and the ``after`` of its next link (None: no next link)."""
        now = time.time()
        limit = _limit(args.get("limit"))
        conditions = _conditions(args.get("filter", ""))
        order = args.get("sortOrder", "ASCENDING")
        if order not in ("ASCENDING", "DESCENDING"):
            raise LogQueryError("E0000001", "Api validation failed: sortOrder")
        if "after" in args and "since" in args:
            raise LogQueryError("E0000001", "Api validation failed: after and since")
        until = parse_iso(args["until"]) if "until" in args else None
        since = parse_iso(args["since"]) if "since" in args else (until or now) - 7 * 86400
        if since < now - MAX_SINCE_SECONDS:
            raise LogQueryError("E0000053", "Invalid date. 'since' must be later than 180 days")
        polling = until is None and order == "ASCENDING"
        with self.lock:
            visible = [
                s
                for s in self.events
                if s.persisted <= now
                and s.published >= now - RETENTION_SECONDS
                and all(_value(s.event, path) == want for path, want in conditions)
            ]
        if polling:
            return _poll(visible, args.get("after"), since, limit, now)
        return _bounded(visible, args.get("after"), since, until or now, limit, order)


def _poll(
    events: list[Stored], after: str | None, since: float, limit: int, now: float
) -> tuple[list[dict[str, Any]], str]:
    # Ordered by persistence; the cursor is the last (persisted, seq) served, or "now" when the
    # page was not full, since everything persisted up to now has then been served.
    start = _decode(after) if after else (since, -1)
    ahead = sorted(
        (s for s in events if (s.persisted, s.seq) > start and (after or s.persisted >= since)),
        key=lambda s: (s.persisted, s.seq),
    )
    page = ahead[:limit]
    if len(ahead) > limit:
        cursor = (page[-1].persisted, page[-1].seq)
    else:
        cursor = (max(now, start[0]), 1 << 62)
    return [s.event for s in page], _encode(cursor)


def _bounded(
    events: list[Stored], after: str | None, since: float, until: float, limit: int, order: str
) -> tuple[list[dict[str, Any]], str | None]:
    inside = sorted(
        (s for s in events if since <= s.published < until),
        key=lambda s: (s.published, s.seq),
        reverse=order == "DESCENDING",
    )
    offset = int(_decode(after)[1]) if after else 0
    page = inside[offset : offset + limit]
    more = offset + limit < len(inside)
    return [s.event for s in page], _encode((0.0, offset + limit)) if more else None


def _limit(value: str | None) -> int:
    try:
        limit = int(value) if value is not None else DEFAULT_LIMIT
    except ValueError:
        raise LogQueryError("E0000001", "Api validation failed: limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise LogQueryError("E0000001", f"Api validation failed: limit must be 1 to {MAX_LIMIT}")
    return limit


def _conditions(text: str) -> list[tuple[str, str]]:
    if not text.strip():
        return []
    found = []
    for part in re.split(r"\s+and\s+", text):
        match = _CONDITION.match(part)
        if match is None:
            raise LogQueryError("E0000001", "Api validation failed: filter")
        found.append((match.group(1), match.group(2)))
    return found


def _value(event: dict[str, Any], path: str) -> str | None:
    if path == "target.id":  # any target matches, as Okta's filter on an array does
        return next((t["id"] for t in event["target"]), None) if event["target"] else None
    head, _, tail = path.partition(".")
    value = event.get(head)
    return value.get(tail) if isinstance(value, dict) and tail else value


def _encode(cursor: tuple[float, int]) -> str:
    # repr: the exact float, so the event the cursor names is never served again
    return base64.urlsafe_b64encode(f"{cursor[0]!r}:{cursor[1]}".encode()).decode().rstrip("=")


def _decode(after: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
        at, seq = raw.split(":")
        return float(at), int(seq)
    except ValueError:
        raise LogQueryError("E0000001", "Api validation failed: after") from None
