"""kombu's Sentinel transport, mended so that a failover does not end the worker.

When the primary dies, Celery's consumer closes its broker connection. kombu releases the
connection (its transport forgets the connection's settings) before closing the channel, and the
channel's close then builds a new pool, from those settings, to put back the messages it had
taken but not acknowledged. Reading the forgotten settings raises ``AttributeError``, which
Celery treats as unrecoverable: the worker exits (tests/faults/test_redis_sentinel.py). Here the
channel keeps the settings it was opened with, so the close puts the messages back through the
sentinels (on the new primary, or not at all while none is elected: then the transport's
visibility timeout restores them, and the sweep resumes their verifications sooner).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class SentinelChannel(kombu_redis.SentinelChannel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._opened_with = self.connection.client

    def _get_pool(self, asynchronous: bool = False) -> Any:
        if self.connection.client is not None:
            return super()._get_pool(asynchronous)  # type: ignore[no-untyped-call]
        self.connection.client = self._opened_with  # released: use what the channel knew
        try:
            return super()._get_pool(asynchronous)  # type: ignore[no-untyped-call]
        finally:
            self.connection.client = None


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORT = f"{__name__}:SentinelTransport"
