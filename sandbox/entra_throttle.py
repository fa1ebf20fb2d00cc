"""Graph's throttling as the Entra ID simulator applies it: sliding windows per budget and app.

From Graph's throttling limits (identity and access): per app and tenant, 3,500 resource units
per 10 s in a tenant under 50 users, 3,000 writes per 150 s, and for the reports API
(``auditLogs``) 5 requests per 10 s. Each request costs one unit here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

Budget = tuple[int, float] | None  # (requests, per seconds); None: no limit
BUDGETS: dict[str, Budget] = {
    "requests": (3500, 10.0),
    "writes": (3000, 150.0),
    "reports": (5, 10.0),
}


class Throttle:
    def __init__(self, budgets: dict[str, Budget]) -> None:
        self.budgets = dict(budgets)
        self.seen: dict[tuple[str, str], deque[float]] = {}
        self.lock = threading.Lock()

    def take(self, buckets: list[str], app: str) -> tuple[str, int] | float:
        """The bucket over budget and the whole seconds to wait, or (taken) the highest share
        of a budget now used, 0..1."""
        now, used = time.monotonic(), 0.0
        with self.lock:
            for bucket in buckets:
                budget = self.budgets.get(bucket)
                if budget is None:
                    continue
                limit, window = budget
                seen = self.seen.setdefault((bucket, app), deque())
                while seen and seen[0] <= now - window:
                    seen.popleft()
                if len(seen) >= limit:
                    return bucket, max(1, math.ceil(seen[0] + window - now))
            for bucket in buckets:
                budget = self.budgets.get(bucket)
                if budget is not None:
                    seen = self.seen[(bucket, app)]
                    seen.append(now)
                    used = max(used, len(seen) / budget[0])
        return used
