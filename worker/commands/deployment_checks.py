"""``deskgate doctor``'s checks of the deployment itself: Redis, a worker, beat, the web app and
the clocks. Each function returns ``Check`` lines; none raises for what it finds.

Why each one matters:
- Redis holds every open verification: it must persist (AOF or RDB) and never evict a key
  (an evicted verification is a gated ticket nobody finishes; an evicted Celery binding stops
  the queue).
- a worker must consume Deskgate's queue, and beat must schedule the sweep, or links expire
  unnoticed and stalled steps are never resumed;
- the desks and Incode reach Deskgate at ``public_url``;
- signed pushes carry a timestamp checked within ``webhook_tolerance_seconds``, so a clock
  that far off refuses every push;
- without a SIEM sink the audit trail lives only in Redis, whose users can cut its tail or wipe
  it (the chain shows any other edit, not those).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from config.privacy import display_url, scrub, url_credentials
from config.settings import Settings
from connectors.provisioning import Check, Status
from worker.celery_app import make_celery
from worker.lifecycle.store import Store
from worker.redis_client import connect

PING_TIMEOUT = 3.0  # seconds a worker has to answer
BEAT_INTERVALS = 3  # the sweep may be this many intervals late before beat counts as silent
BEAT_MIN_SECONDS = 60.0  # ... and never less than this (a sweep can queue behind a burst)
CLOCK_WARN_FRACTION = 0.1  # a warning past this share of webhook_tolerance_seconds

FIX_EVICTION = (
    "set maxmemory-policy noeviction (redis.conf or CONFIG SET; on a managed Redis, its "
    "parameter group), so Redis refuses writes when full instead of dropping verifications"
)
FIX_PERSISTENCE = (
    "turn on appendonly yes (AOF, preferred) or an RDB save schedule (save 3600 1 300 100), so a "
    "Redis restart keeps the open verifications"
)
FIX_AUDIT_SINK = (
    "configure [audit_sink] (docs/audit.md): the SIEM's copy of the trail is the witness that "
    "whoever can write to Redis cannot edit"
)
FIX_REDIS = "check redis_url (DESKGATE_REDIS_URL) and that Redis runs and this host can reach it"


def _said(exc: Exception, redis_url: str) -> str:
    """An error's text, without the Redis credentials a client library may have put in it."""
    text = scrub(str(exc))
    for secret in url_credentials(redis_url):
        text = text.replace(secret, "***")
    return text


def redis_client(settings: Settings, timeout: float) -> Redis[str]:
    return connect(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def redis_checks(redis: Redis[str], url: str) -> list[Check]:
    try:
        version = redis.info("server").get("redis_version", "?")
    except RedisError as exc:
        detail = f"{display_url(url)}: {_said(exc, url)}"
        return [Check("redis", "answers", Status.FAIL, detail, FIX_REDIS)]
    checks = [Check("redis", "answers", Status.OK, f"Redis {version} at {display_url(url)}")]
    try:
        appendonly = redis.config_get("appendonly").get("appendonly", "no")
        save = redis.config_get("save").get("save", "")
        policy = redis.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except ResponseError as exc:
        # Managed services rename or forbid CONFIG; INFO still tells the eviction policy.
        checks.append(
            Check(
                "redis",
                "persistence",
                Status.WARN,
                f"Redis refused CONFIG GET ({scrub(str(exc))}): persistence cannot be read",
                "verify by hand, in the Redis service's settings, that AOF or RDB snapshots are on",
            )
        )
        policy = str(redis.info("memory").get("maxmemory_policy", ""))
    else:
        if appendonly == "yes" or save.strip():
            detail = "AOF on" if appendonly == "yes" else f"RDB snapshots (save {save})"
            checks.append(Check("redis", "persistence", Status.OK, detail))
        else:
            checks.append(
                Check(
                    "redis",
                    "persistence",
                    Status.FAIL,
                    'neither AOF (appendonly no) nor RDB (save "") is on: a restart loses '
                    "every open verification",
                    FIX_PERSISTENCE,
                )
            )
    if policy == "noeviction":
        checks.append(Check("redis", "eviction", Status.OK, "maxmemory-policy noeviction"))
    else:
        checks.append(
            Check(
                "redis",
                "eviction",
                Status.FAIL,
                f"maxmemory-policy is {policy or 'unknown'}: Redis may evict a verification "
                "or the queue's keys when memory runs short",
                FIX_EVICTION,
            )
        )
    return checks


def worker_check(settings: Settings, timeout: float = PING_TIMEOUT) -> Check:
    """Some worker consumes ``settings.queue`` and answers within ``timeout`` (a worker of
    another deployment on the same Redis answers too, but not on this queue)."""
    app = make_celery(settings)
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # the broker itself failed; the Redis check says why
        detail = f"cannot ask the workers: {_said(exc, settings.redis_url)}"
        return Check("worker", "ping", Status.FAIL, detail, FIX_REDIS)
    finally:
        app.close()
    serving = sorted(
        name
        for name, queues in replies.items()
        if any(q.get("name") == settings.queue for q in queues or [])
    )
    if serving:
        return Check(
            "worker",
            "ping",
            Status.OK,
            f"{len(serving)} worker(s) answer on queue {settings.queue}",
        )
    return Check(
        "worker",
        "ping",
        Status.FAIL,
        f"no worker answers on queue {settings.queue} within {timeout:.0f} s "
        f"({len(replies)} answered on other queues)",
        "start `deskgate worker` with this configuration (same redis_url and queue)",
    )


def beat_check(store: Store, interval: int, now: float) -> Check:
    """Beat's heartbeat: the sweep it schedules records when it ran (``Store.record_sweep``)."""
    fix = (
        "run exactly one `deskgate beat` with this configuration (and a `deskgate worker`, "
        "which runs the sweep beat schedules)"
    )
    try:
        last = store.last_sweep()
    except RedisError as exc:
        detail = f"cannot read it: {scrub(str(exc))}"
        return Check("beat", "heartbeat", Status.FAIL, detail, FIX_REDIS)
    limit = max(BEAT_INTERVALS * interval, BEAT_MIN_SECONDS)
    if last is None:
        return Check("beat", "heartbeat", Status.FAIL, "the sweep has not run in a day", fix)
    age = now - last
    if age > limit:
        detail = f"the sweep last ran {age:.0f} s ago (every {interval} s expected)"
        return Check("beat", "heartbeat", Status.FAIL, detail, fix)
    return Check("beat", "heartbeat", Status.OK, f"the sweep ran {max(age, 0):.0f} s ago")


def audit_sink_check(settings: Settings) -> Check:
    sink = settings.audit_sink
    if sink is None:
        detail = "no audit_sink: the audit trail lives only in Redis"
        return Check("audit", "siem sink", Status.WARN, detail, FIX_AUDIT_SINK)
    where = display_url(sink.base)
    return Check("audit", "siem sink", Status.OK, f"forwarded to {where} ({sink.format})")


def web_check(public_url: str | None, timeout: float) -> Check:
    if public_url is None:
        return Check(
            "web",
            "readyz",
            Status.FAIL,
            "public_url is not set",
            "set DESKGATE_PUBLIC_URL (public_url) to where the desks and Incode reach "
            "Deskgate's web app",
        )
    url = f"{public_url}/readyz"
    shown = display_url(url)
    route = display_url(public_url)
    fix = f"start `deskgate web` and route {route} to it (proxy, load balancer, DNS)"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        detail = f"{shown}: no answer ({type(exc).__name__})"
        return Check("web", "readyz", Status.FAIL, detail, fix)
    if response.status_code != 200:
        reason = scrub(response.text[:200])
        detail = f"{shown} answered {response.status_code}: {reason}"
        if response.status_code == 503:
            fix = "the web app runs but cannot reach Redis: check its redis_url"
        return Check("web", "readyz", Status.FAIL, detail, fix)
    return Check("web", "readyz", Status.OK, f"{shown} answers 200")


# -- clocks -----------------------------------------------------------------------------------


def clock_check(name: str, read: Callable[[], float], tolerance: int) -> Check:
    """Compare this host's clock with another's; ``read`` returns the other clock's offset in
    seconds (positive: the other clock is ahead)."""
    try:
        skew = read()
    except (httpx.HTTPError, RedisError, ValueError) as exc:
        return Check(
            "clock",
            name,
            Status.WARN,
            f"could not read its clock: {scrub(str(exc)) or type(exc).__name__}",
            f"make {name} reachable from this host, then run doctor again",
        )
    if abs(skew) < 1.5:  # within what a Date header's whole seconds can tell
        detail = "in step with this host"
    else:
        detail = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} this host"
    fix = (
        "synchronise the clocks with NTP (chrony, systemd-timesyncd) on every Deskgate host: "
        f"signed pushes more than webhook_tolerance_seconds ({tolerance} s) off are refused"
    )
    if abs(skew) > tolerance:
        return Check("clock", name, Status.FAIL, detail, fix)
    if abs(skew) > tolerance * CLOCK_WARN_FRACTION:
        return Check("clock", name, Status.WARN, detail, fix)
    return Check("clock", name, Status.OK, detail)


def redis_offset(redis: Redis[str]) -> float:
    before = time.time()
    seconds, micros = redis.time()
    return float(seconds) + float(micros) / 1e6 - (before + time.time()) / 2


def http_date_offset(url: str, timeout: float) -> float:
    """The offset of the clock behind ``url``, from its answer's ``Date`` header (any status:
    an error page carries the server's time too). ``Date`` has whole seconds, so a second of
    difference means nothing."""
    before = time.time()
    response = httpx.get(url, timeout=timeout, follow_redirects=False)
    after = time.time()
    date = response.headers.get("Date")
    if not date:
        raise ValueError(f"{url} answered without a Date header")
    return email.utils.parsedate_to_datetime(date).timestamp() + 0.5 - (before + after) / 2
