"""A Redis client for the configured ``redis_url`` (``config/redis_url.py``), whichever its form:
the one place the store, the web app and the commands build theirs, so Sentinel works in all."""

from __future__ import annotations

from typing import Any

from redis import BlockingConnectionPool, ConnectionPool, Redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from config.redis_url import check

SENTINEL_TIMEOUT = 2.0  # seconds a sentinel has to say where the primary is, before the next


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The primary's connections from the sentinels, with threads waiting for a free connection
    past the cap instead of failing (as ``BlockingConnectionPool``)."""


def connect(url: str, *, blocking: bool = False, **options: Any) -> Redis[str]:
    """A decoding client for ``url``. ``blocking``: threads wait for a free connection past
    ``max_connections`` (and ``timeout`` seconds at most). Through Sentinel, the client asks the
    sentinels for the primary on each new connection, and drops its connections to a primary
    that was demoted, so after a failover the next command reaches the new one."""
    target = check(url)
    if target is None:
        pool_class = BlockingConnectionPool if blocking else ConnectionPool
        pool = pool_class.from_url(url, decode_responses=True, **options)
        # from_pool: closing the client closes its pool too, as Redis.from_url's would.
        client: Redis[str] = Redis.from_pool(pool)  # type: ignore[attr-defined] # stubs predate it
        return client
    sentinels = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        },
        username=target.username,
        password=target.password,
        db=target.db,
        decode_responses=True,
        **options,
    )
    managed = BlockingSentinelPool if blocking else SentinelConnectionPool
    primary: Redis[str] = sentinels.master_for(target.master, connection_pool_class=managed)
    return primary
