"""Where Redis is: the one ``redis_url`` setting, read and checked at start-up (no network).

Three forms (docs/operations.md, "Redis in production"):

- ``redis://[user:password@]host:6379/0``: one Redis, or a managed service's failover endpoint
  (a name that always points at the current primary);
- ``rediss://...``: the same over TLS (``?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``);
- ``sentinel://[user:password@]host1:26379,host2:26379,host3:26379/0?master=NAME``: Redis
  Sentinel. The sentinels say which node is the primary of ``NAME``; ``user:password`` are the
  data nodes' (an ACL user), never sent to the sentinels.

Redis Cluster is not supported: one lifecycle transition is one Lua script over a verification's
hash, its indexes and the audit stream, keys in different hash slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_PORT = 26379
SCHEMES = ("redis", "rediss", "unix", "sentinel")


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


def check(url: str) -> SentinelTarget | None:
    """The sentinels to ask for a ``sentinel://`` URL, None for a direct one; a ``ValueError``
    saying what is wrong (never the password) for anything else."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"must start with one of {', '.join(s + '://' for s in SCHEMES)} "
            f"(got {scheme + '://' if scheme else 'no scheme'}); Redis Cluster is not supported"
        )
    return _sentinel(url) if scheme == "sentinel" else None


def _sentinel(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"master"})
    if unknown:
        raise ValueError(f"sentinel:// takes only ?master=NAME (unknown: {', '.join(unknown)})")
    master = query.get("master", [""])[0]
    if not master:
        raise ValueError("sentinel:// needs ?master=NAME, the name the sentinels monitor")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"the database after the hosts must be a number (got {db!r})")
    return SentinelTarget(
        sentinels=tuple(_host(token) for token in hosts.split(",")),
        master=master,
        db=int(db),
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def _host(token: str) -> tuple[str, int]:
    node = urlsplit(f"//{token.strip()}")
    try:
        port = node.port or SENTINEL_PORT
    except ValueError:
        raise ValueError(f"sentinel {token!r}: the port must be a number") from None
    if not node.hostname:
        raise ValueError("sentinel:// needs host:port of each sentinel, separated by commas")
    return node.hostname, port


def broker(url: str) -> tuple[str, dict[str, str]]:
    """Celery's broker URL and extra transport options for ``url``: kombu's own Sentinel form
    (``sentinel://host:port;sentinel://host2:port`` with the ``master_name`` option)."""
    target = check(url)
    if target is None:
        return url, {}
    auth = urlsplit(url).netloc.rpartition("@")[0]
    auth = f"{auth}@" if auth else ""
    urls = [
        f"sentinel://{auth}{_netloc(host)}:{port}/{target.db}" for host, port in target.sentinels
    ]
    return ";".join(urls), {"master_name": target.master}


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host
