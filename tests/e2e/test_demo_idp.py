"""The demo's identity-provider part (``sandbox/demo_idp.py``) through the whole stack: an MFA
reset performed once on Okta and once on Entra ID, checked in each IdP simulator's own log, the
refusals with their notes, and ``deskgate report``'s grants and actions. ``run`` returns what
ended otherwise than it should; the demo exits non-zero on any of it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from sandbox import demo_idp
from tests.e2e.conftest import E2E_REDIS_URL

pytestmark = pytest.mark.e2e


def test_the_demos_idp_part_ends_where_it_should() -> None:
    prefix, queue = f"demoidp{os.getpid()}", f"deskgate-demoidp{os.getpid()}"
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    try:
        assert demo_idp.run(E2E_REDIS_URL, prefix, queue, since) == []
    finally:
        redis: Redis[str] = Redis.from_url(E2E_REDIS_URL, decode_responses=True)
        redis.delete(*redis.scan_iter(f"{prefix}:*"), queue)
        redis.close()
