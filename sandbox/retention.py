"""Which of a run's Redis keys would live for ever.

Every key Deskgate writes must expire, so Redis stays bounded, except those that only ever hold
open work: the ``due`` sorted set, the open states' indexes (``state:*``), the poll cursors
(``cursor:*``), and the record, session index
and open marker (``v:``, ``iv:``, ``open:``) of a verification still open, that is in an open
state and still named by its ticket's open marker (an abandoned verification is not open, whatever
its state says). The audit trail (``audit``, its forwarder's counters ``audit:sink`` and the ids
it set aside ``audit:sink:aside``, the chain's head ``audit:head``: one MAC) is bounded by its
own retention and entry cap instead of a
TTL. Celery's own keys (its queue lists, ``_kombu.*``, ``unacked*``) are left to Celery. The
end-to-end and fault suites run ``keys_without_ttl`` after every run.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from worker.lifecycle import OPEN

CELERY_KEYS = ("unacked", "unacked_index")
CELERY_PREFIXES = ("_kombu.",)  # its bindings and deadlines
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's suffix for a queue's other priority levels


def keys_without_ttl(
    redis: Redis[str], prefix: str, queues: Iterable[str] = (), match: str | None = None
) -> list[str]:
    """The keys matching ``match`` (default: the run's ``prefix:*``) that have no TTL and are
    not one of the documented long-lived keys. ``redis`` must decode responses."""
    queues = tuple(queues)
    found = []
    for key in redis.scan_iter(match or f"{prefix}:*", count=1000):
        if redis.ttl(key) != -1 or _celery(key, queues) or _long_lived(redis, prefix, key):
            continue
        if redis.ttl(key) == -1:  # read again: a verification may have finished meanwhile
            found.append(key)
    return sorted(found)


def _celery(key: str, queues: tuple[str, ...]) -> bool:
    if key in CELERY_KEYS or key.startswith(CELERY_PREFIXES):
        return True
    return any(key == q or key.startswith(q + PRIORITY_SEPARATOR) for q in queues)


def _long_lived(redis: Redis[str], prefix: str, key: str) -> bool:
    if not key.startswith(f"{prefix}:"):
        return False
    family, _, rest = key.removeprefix(f"{prefix}:").partition(":")
    if family == "due" and not rest:
        return True
    if family == "cursor" or (family == "state" and rest in OPEN):
        return True
    if family == "audit" and rest in ("", "sink", "sink:aside", "head"):
        return True
    if family == "v":
        return _open(redis, prefix, rest)
    if family in ("iv", "open"):
        vid = redis.get(key)
        return vid is not None and _open(redis, prefix, vid)
    return False


def _open(redis: Redis[str], prefix: str, vid: str) -> bool:
    """The verification is in an open state and its ticket's open marker names it."""
    desk, ticket, state = redis.hmget(f"{prefix}:v:{vid}", ["desk", "ticket_id", "state"])
    if state not in OPEN or desk is None or ticket is None:
        return False
    return redis.get(f"{prefix}:open:{desk}:{ticket}") == vid
