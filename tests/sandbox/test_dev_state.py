"""``deskgate dev`` and ``deskgate demo`` start from a clean state of their own: the simulators
start empty, so what an earlier run left in Redis under the same ticket ids must go, and only
that (the database may hold someone else's keys)."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis

from sandbox import demo
from tests.conftest import TEST_REDIS_URL


class StackReached(Exception):
    """Raised by the stand-in for the stack: the run got as far as starting it."""


@pytest.mark.parametrize(
    ("run", "prefix", "queue"),
    [
        (lambda: demo.dev_command([]), "dev", "deskgate-dev"),
        (lambda: demo.demo_command([]), "demo", "deskgate-demo"),
    ],
)
def test_a_second_run_starts_without_the_first_ones_keys_and_keeps_everyone_elses(
    redis: Redis[str], monkeypatch: pytest.MonkeyPatch, run: Any, prefix: str, queue: str
) -> None:
    """The second ``deskgate dev`` found ticket 1's gated verification from the first run and
    ended the new ticket 1's request at once, without a note."""
    redis.set(f"{prefix}:open:acme_zendesk:1", "v-of-the-first-run")
    redis.hset(f"{prefix}:v:v-of-the-first-run", mapping={"state": "sent", "gated": "1"})
    redis.lpush(queue, "a task of the first run")
    redis.set("someone-else:key", "kept")
    redis.set(f"{prefix}x:not-ours", "kept")
    seen: dict[str, list[str]] = {}

    def stack(options: Any) -> Any:
        assert (options.key_prefix, options.queue) == (prefix, queue)
        seen["keys"] = sorted(redis.scan_iter("*"))
        raise StackReached

    monkeypatch.setattr(demo, "_redis_or_embedded", lambda: (TEST_REDIS_URL, "test", None))
    monkeypatch.setattr(demo, "Stack", stack)
    with pytest.raises(StackReached):
        run()
    assert seen["keys"] == [f"{prefix}x:not-ours", "someone-else:key"]


def test_keep_redis_keeps_the_earlier_runs_state(
    redis: Redis[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis.set("dev:open:acme_zendesk:1", "v-of-the-first-run")

    def stack(options: Any) -> Any:
        raise StackReached

    monkeypatch.setattr(demo, "_redis_or_embedded", lambda: (TEST_REDIS_URL, "test", None))
    monkeypatch.setattr(demo, "Stack", stack)
    with pytest.raises(StackReached):
        demo.dev_command(["--keep-redis"])
    assert redis.get("dev:open:acme_zendesk:1") == "v-of-the-first-run"
