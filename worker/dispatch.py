"""The producer side of the queue: what webhooks, pollers and the sweep hand to the worker.

Messages carry ids only; every task re-reads the state it needs.

Two ways to put them on the queue, behind one interface (``Sender``): ``Dispatcher`` calls
Celery's ``send_task`` (the worker's own dispatches); ``RedisDispatcher`` writes the same Celery
message with one ``LPUSH`` on a Redis client the caller already has (the webhook app), knowing
only the queue's name and Redis key, so the web app never builds a Celery app. Why the second:
kombu's Redis transport builds a new ``redis.Redis`` client for every publish, re-declares the
queue and wraps the publish in ``Connection.ensure``: ``send_task`` costs ~392 µs of CPU where one
``LPUSH`` of the same message costs ~121 µs, and the enqueue was half of a webhook's CPU
(docs/performance.md, "Webhook ingest"). ``tests/unit/test_dispatch.py`` pins the message to what
the installed Celery sends, so an upgrade that changes the format fails there.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from redis import Redis

from connectors.http import request_id

START_VERIFICATION = "deskgate.start_verification"
CHECK_RESULT = "deskgate.check_result"
POLL_DESK = "deskgate.poll_desk"
SWEEP = "deskgate.sweep"
AUDIT_MARKERS = "deskgate.audit_markers"
POLL_IDP = "deskgate.poll_idp"


class Sender:
    """The tasks Deskgate enqueues, by name; ``send`` is how."""

    def send(self, task: str, args: list[Any]) -> None:
        raise NotImplementedError

    def start_verification(self, desk: str, ticket_id: str, origin: str = "poll") -> None:
        self.send(START_VERIFICATION, [desk, ticket_id, origin])

    def check_result(self, verification_id: str, hint: str, now: float | None = None) -> None:
        self.send(CHECK_RESULT, [verification_id, hint, now])

    def poll_desk(self, desk: str, recover: bool = False) -> None:
        self.send(POLL_DESK, [desk, recover])


class Dispatcher(Sender):
    """Enqueues through Celery (``send_task``)."""

    def __init__(self, celery: Any) -> None:
        self.celery = celery

    def send(self, task: str, args: list[Any]) -> None:
        self.celery.send_task(task, args=args)


# KEYS: queue, dedupe keys...   ARGV: dedupe ttl, each key's limit..., messages...
# Each key counts the deliveries taken under it; one at its limit makes this a duplicate and
# nothing is pushed. Otherwise the LPUSH comes first, as the script's first write: if it fails
# (wrong type, out of memory) the script stops before any key is counted, so the sender's retry
# is still new. Redis does not roll back a script that errors after writing, hence this order.
_SEND_ONCE = """
local n = #KEYS - 1
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= tonumber(ARGV[i + 1]) then return 0 end
end
redis.call('LPUSH', KEYS[1], unpack(ARGV, n + 2))
for i = 1, n do
  if redis.call('INCR', KEYS[i + 1]) == 1 then redis.call('EXPIRE', KEYS[i + 1], ARGV[1]) end
end
return 1
"""


class RedisDispatcher(Sender):
    """Enqueues with one ``LPUSH`` of the message ``send_task`` would publish to ``queue``,
    whose list is ``key`` (``queue_key``).

    ``redis`` must reach the broker's database (Deskgate's store and queue share ``redis_url``).
    Only what ``send_task`` sends for a task name with positional args (and the request id as
    its one keyword argument) and no options is reproduced: no countdown, eta, expiry, priority,
    links or results."""

    def __init__(self, redis: Redis[str], queue: str, key: str) -> None:
        self.redis = redis
        self.queue = queue
        self.key = key
        self._send_once = redis.register_script(_SEND_ONCE)
        self._local = threading.local()

    def _reply_to(self) -> str:
        # A per-thread id, as Celery's ``app.thread_oid`` (unused without a result backend).
        if not hasattr(self._local, "oid"):
            self._local.oid = str(uuid.uuid4())
        oid: str = self._local.oid
        return oid

    def _message(self, task: str, args: list[Any]) -> str:
        # origin as send_task writes it: gen<pid>@<host> (so after a fork too).
        # The webhook's request id travels with the task (a keyword argument, which retries keep).
        rid = request_id.get()
        kwargs = {} if rid is None else {"request_id": rid}
        message = task_message(task, args, self.queue, anon_nodename(), self._reply_to(), kwargs)
        return json.dumps(message)

    def send(self, task: str, args: list[Any]) -> None:
        self.redis.lpush(self.key, self._message(task, args))

    def send_once(
        self,
        tasks: list[tuple[str, list[Any]]],
        dedupe: list[str],
        ttl: int,
        limits: list[int] | None = None,
    ) -> bool:
        """Enqueue ``tasks`` and count the delivery under each ``dedupe`` key (kept ``ttl``
        seconds from its first count), in one atomic step, unless a key already reached its limit
        (``limits``, 1 each by default): then False, a duplicate, nothing enqueued. Raises (a
        ``RedisError``) with nothing counted if the enqueue fails, so a retry is accepted."""
        limits = limits or [1] * len(dedupe)
        if not tasks or not dedupe or len(limits) != len(dedupe):
            raise ValueError("send_once needs tasks and one limit per dedupe key")
        messages = [self._message(task, args) for task, args in tasks]
        return bool(self._send_once(keys=[self.key, *dedupe], args=[ttl, *limits, *messages]))


def queue_key(queue: str, transport_options: Mapping[str, Any]) -> str:
    """The Redis list the worker's Redis transport BRPOPs for ``queue`` at the default priority:
    kombu names priority 0's list after the queue alone (others get a suffix), and prefixes
    every key with the transport's ``global_keyprefix`` when one is set."""
    prefix: str = transport_options.get("global_keyprefix", "")
    return f"{prefix}{queue}"


ARGSREPR_MAXSIZE = 1024  # Celery's default (app.amqp.argsrepr_maxsize)


def task_message(
    task: str,
    args: list[Any],
    queue: str,
    origin: str,
    reply_to: str,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Celery task message, protocol 2, as ``send_task`` publishes it through kombu's Redis
    transport to ``queue`` (anonymous exchange, priority 0), JSON serializer."""
    task_id = str(uuid.uuid4())
    kwargs = kwargs or {}
    argsrepr = repr(args)
    if len(argsrepr) > ARGSREPR_MAXSIZE:  # ids are short; saferepr only for the odd long one
        argsrepr = saferepr(args, ARGSREPR_MAXSIZE)
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([args, kwargs, embed]).encode()
    return {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": repr(kwargs),
            "origin": origin,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
