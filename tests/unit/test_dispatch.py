"""The webhook app's enqueue (``RedisDispatcher``: one LPUSH of a Celery message it writes itself)
against what the installed Celery and kombu publish, on a real Redis: same list, same message
but for its fresh ids (and the sender's own per-thread ``reply_to``), and kombu reads it back. A
Celery upgrade that changes the message or the queue's key fails here; the e2e suite shows the
real worker running these messages."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from redis import Redis
from redis.exceptions import ResponseError

from connectors.registry import SETTINGS
from tests.conftest import answering_redis, settings_data
from worker.celery_app import make_celery
from worker.dispatch import CHECK_RESULT, POLL_DESK, START_VERIFICATION, RedisDispatcher, queue_key

# Every id a message gets afresh; the rest must match Celery's byte for byte.
IDS = (("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id"))


@pytest.fixture
def scratch() -> Iterator[tuple[Redis[str], str]]:
    """A client on the tests' database and a queue name nobody else uses; its keys go after."""
    client = answering_redis()
    queue = f"dgtest-dispatch-{uuid.uuid4().hex[:12]}"
    yield client, queue
    for key in client.scan_iter(f"*{queue}*"):
        client.delete(key)
    client.close()


def celery_for(queue: str, keyprefix: str | None) -> Celery:
    app = make_celery(SETTINGS(**settings_data(queue=queue)))
    if keyprefix is not None:
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "global_keyprefix": keyprefix,
        }
    return app


def dispatcher_for(app: Celery, redis: Redis[str]) -> RedisDispatcher:
    """As the web app builds it: from the queue's name and the transport's options, no app."""
    queue = app.conf.task_default_queue
    return RedisDispatcher(redis, queue, queue_key(queue, app.conf.broker_transport_options))


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    ids = {message[part][name] for part, name in IDS}
    assert len(ids) == 1  # id, root_id and correlation_id are the task's one id
    assert uuid.UUID(message["headers"]["id"]) and uuid.UUID(message["properties"]["delivery_tag"])
    assert uuid.UUID(message["properties"]["reply_to"])  # the sender's, per thread
    copy: dict[str, Any] = json.loads(json.dumps(message))
    for part, name in (*IDS, ("properties", "delivery_tag"), ("properties", "reply_to")):
        copy[part][name] = "<id>"
    return copy


@pytest.mark.parametrize("keyprefix", [None, "dgtest-pfx:"])
@pytest.mark.parametrize(
    ("task", "args"),
    [
        (START_VERIFICATION, ["acme_zendesk", "42"]),
        (CHECK_RESULT, ["0f3a9c", "SESSION_SUCCEEDED", None]),
        (POLL_DESK, ["acme_zendesk", True]),
    ],
)
def test_the_message_is_the_one_celery_sends(
    scratch: tuple[Redis[str], str], keyprefix: str | None, task: str, args: list[Any]
) -> None:
    redis, queue = scratch
    app = celery_for(queue, keyprefix)
    try:
        app.send_task(task, args=args)
        dispatcher_for(app, redis).send(task, args)
    finally:
        app.close()
    # Both went to the list the worker's transport reads (kombu's key for priority 0).
    key = f"{keyprefix or ''}{queue}"
    ours, celerys = (json.loads(raw) for raw in redis.lrange(key, 0, -1))  # LPUSH: newest first
    assert without_ids(ours) == without_ids(celerys)
    body = json.loads(base64.b64decode(ours["body"]))
    assert body == [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def test_kombu_reads_the_message_back(scratch: tuple[Redis[str], str]) -> None:
    redis, queue = scratch
    app = celery_for(queue, None)
    try:
        dispatcher_for(app, redis).check_result("0f3a9c", "SESSION_FAILED")
        with app.connection_for_read() as conn:
            message = conn.SimpleQueue(queue).get(timeout=2)
            assert message.headers["task"] == CHECK_RESULT
            assert message.delivery_info["routing_key"] == queue
            assert message.decode() == [
                ["0f3a9c", "SESSION_FAILED", None],
                {},
                {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
            ]
            message.ack()
    finally:
        app.close()


# -- send_once: the dedupe key and the enqueue in one step ---------------------------------


def test_send_once_enqueues_and_takes_every_key_or_does_nothing(
    scratch: tuple[Redis[str], str],
) -> None:
    redis, queue = scratch
    dispatcher = dispatcher_for(celery_for(queue, None), redis)
    keys = [f"{queue}:seen:a", f"{queue}:seen:b"]
    tasks = [(START_VERIFICATION, ["acme", "1"]), (START_VERIFICATION, ["acme", "2"])]
    assert dispatcher.send_once(tasks, keys, 600)
    assert redis.llen(queue) == 2
    assert all(0 < redis.ttl(k) <= 600 for k in keys)
    # Seen under either key: a duplicate, nothing pushed.
    assert not dispatcher.send_once(tasks[:1], keys[1:], 600)
    assert not dispatcher.send_once(tasks[:1], [f"{queue}:seen:new", keys[0]], 600)
    assert redis.llen(queue) == 2
    assert not redis.exists(f"{queue}:seen:new")  # a duplicate takes none of its keys


def test_send_once_admits_up_to_each_keys_limit(scratch: tuple[Redis[str], str]) -> None:
    redis, queue = scratch
    dispatcher = dispatcher_for(celery_for(queue, None), redis)
    content = f"{queue}:seen:content"
    task = [(START_VERIFICATION, ["acme", "1"])]
    taken = [
        dispatcher.send_once(task, [f"{queue}:seen:inv:{n}", content], 600, [1, 3])
        for n in range(5)
    ]
    assert taken == [True, True, True, False, False]
    assert redis.llen(queue) == 3 and redis.get(content) == "3"
    assert not dispatcher.send_once(task, [f"{queue}:seen:inv:0", f"{queue}:seen:x"], 600, [1, 3])
    with pytest.raises(ValueError, match="one limit per dedupe key"):
        dispatcher.send_once(task, [content], 600, [1, 1])


def test_a_failed_enqueue_takes_no_dedupe_key_so_the_retry_is_accepted(
    scratch: tuple[Redis[str], str],
) -> None:
    """Finding 7: the key used to be taken before the enqueue, so when the LPUSH failed (503)
    the sender's retry was dropped as a duplicate."""
    redis, queue = scratch
    dispatcher = dispatcher_for(celery_for(queue, None), redis)
    key = f"{queue}:seen:delivery"
    redis.set(queue, "not a list")  # LPUSH answers WRONGTYPE
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        dispatcher.send_once([(CHECK_RESULT, ["v1", "SESSION_SUCCEEDED", None])], [key], 600)
    assert not redis.exists(key)
    redis.delete(queue)
    assert dispatcher.send_once([(CHECK_RESULT, ["v1", "SESSION_SUCCEEDED", None])], [key], 600)
    assert redis.llen(queue) == 1 and redis.exists(key)
