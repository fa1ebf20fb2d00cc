"""Benchmarks that print figures (not pass/fail tests); see docs/performance.md.

Each is one command (``python -m bench.<name>``), bounded in count and time, talks only to
127.0.0.1 and uses Redis database 12 (``DESKGATE_BENCH_REDIS_URL``), never the demo's or the
tests' databases.
"""
