"""Bypass detection's figures (docs/bypass.md): how soon an admin action in an IdP becomes an
alert, and what one poll of an IdP's audit log costs as history grows.

- detection latency: on the Okta and Entra simulators with their log delays (Entra's default,
  120 s, is what Microsoft quoted at the 95th percentile; Okta documents none, so 0 unless
  ``--okta-delay``), a watcher polls every ``--interval`` seconds as beat would, and an admin
  resets a user's MFA in the console at a random moment of the poll cycle; the figure is the
  time from the action to the ``idp.bypass`` audit event. The bound is the log's delay plus one
  poll interval (plus the poll itself).
- poll cost: with 0, 10,000 and 100,000 past events (handled ids kept in Redis, and as many
  ledger entries), the IdP calls and Redis commands of one poll with nothing new, and of one
  with one new admin action; and the Redis memory of the handled ids.

Run ``python -m bench.bypass`` (about ``samples x (delay + interval)`` for the latency: 10
minutes with the defaults); ``--cost-only`` runs the cost part alone, in under a minute.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from functools import partial
from typing import Any

import httpx
from redis import Redis

from bench.harness import machine, now_utc, redis_url, table, write_section
from connectors.entra.config import EntraIdpConfig
from connectors.entra.connector import EntraConnector
from connectors.http import RateLimited
from connectors.identity_provider import IdentityProvider
from connectors.okta.config import OktaIdpConfig
from connectors.okta.connector import OktaConnector
from sandbox import entra, okta
from sandbox.common import Server, serve
from worker.audit.chain import Chain
from worker.idp.bypass import Detector, Rules, reason_actions
from worker.idp.ledger import IdpLedger, LedgerEntry
from worker.idp.watch import Watcher
from worker.lifecycle.pace import Pace
from worker.lifecycle.store import Store

CHAIN = Chain([b"bench-audit-chain-key"])
PREFIX = "dgbb"


def rules() -> Rules:
    return Rules(frozenset(), frozenset(), 30 * 60.0, reason_actions(None))


class Bench:
    def __init__(self, okta_delay: float, entra_delay: float) -> None:
        self.redis: Redis[str] = Redis.from_url(redis_url(), decode_responses=True)
        self.redis.flushdb()
        self.store = Store(self.redis, PREFIX, 3600, chain=CHAIN)
        self.okta_sim = okta.OktaSimConfig(log_delay_seconds=okta_delay)
        self.entra_sim = entra.EntraSimConfig(audit_delay_seconds=entra_delay)
        self.servers: dict[str, Server] = {
            "okta": serve(okta.create_app(self.okta_sim)),
            "entra": serve(entra.create_app(self.entra_sim)),
        }
        self.control = {
            k: httpx.Client(base_url=s.url, timeout=10) for k, s in self.servers.items()
        }
        self.idps: dict[str, IdentityProvider] = {
            "okta": OktaConnector(
                "okta",
                OktaIdpConfig.model_validate(
                    {
                        "kind": "okta",
                        "base_url": self.servers["okta"].url,
                        "api_token": self.okta_sim.api_token,
                    }
                ),
                10,
            ),
            "entra": EntraConnector(
                "entra",
                EntraIdpConfig.model_validate(
                    {
                        "kind": "entra",
                        "tenant_id": self.entra_sim.tenant_id,
                        "client_id": self.entra_sim.client_id,
                        "client_secret": self.entra_sim.client_secret,
                        "graph_url": self.servers["entra"].url,
                        "login_url": self.servers["entra"].url,
                    }
                ),
                10,
            ),
        }
        self.admin = self.entra_user("helpdesk.lead")

    def fresh(self) -> None:
        """Forget the simulators' users and logs (Entra's portal admin made again)."""
        for client in self.control.values():
            client.post("/_sandbox/reset").raise_for_status()
        self.admin = self.entra_user("helpdesk.lead")

    def watcher(self, idp: str) -> Watcher:
        ledger = IdpLedger(self.redis, PREFIX, 86400)
        detector = Detector(idp, self.idps[idp], self.store, ledger, rules(), {})
        return Watcher(detector, Pace(self.redis, PREFIX), time.time)

    def okta_user(self) -> str:
        login = f"u{random.getrandbits(40):x}@acme.test"
        resp = self.control["okta"].post("/_sandbox/users", json={"login": login, "email": login})
        return str(resp.json()["id"])

    def entra_user(self, name: str = "") -> str:
        body = {
            "upn": f"{name or 'u'}{random.getrandbits(40):x}@acme.test",
            "methods": [{"type": "microsoftAuthenticator", "default": True}],
        }
        return str(self.control["entra"].post("/_sandbox/users", json=body).json()["id"])

    def act(self, idp: str) -> str:
        """An admin resets a new user's MFA in the console; returns the user's id."""
        if idp == "okta":
            user = self.okta_user()
            self.control["okta"].post(
                "/_sandbox/console", json={"user": user, "action": "reset_factors"}
            )
            return user
        user = self.entra_user()
        methods = self.control["entra"].get(f"/_sandbox/users/{user}").json()["methods"]
        method = next(m["id"] for m in methods if "password" not in m["@odata.type"])
        body = {"admin": self.admin, "user": user, "action": "delete_method", "method": method}
        self.control["entra"].post("/_sandbox/portal", json=body)
        return user

    def alerted(self, user: str) -> float | None:
        for _, fields in self.redis.xrange(self.store.audit_key):
            if fields.get("target") == user:
                return float(fields["time"])
        return None

    def close(self) -> None:
        for idp in self.idps.values():
            idp.close()
        for client in self.control.values():
            client.close()
        for server in self.servers.values():
            server.stop()
        self.redis.close()


def latency(bench: Bench, idp: str, interval: float, samples: int) -> list[float]:
    """Action -> alert, with a poll every ``interval`` seconds (beat's schedule)."""
    watcher = bench.watcher(idp)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            patient(watcher)
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    found: list[float] = []
    try:
        time.sleep(1)  # the first poll sets the cursor
        for _ in range(samples):
            time.sleep(random.uniform(0, interval))  # any moment of the poll cycle
            acted, user = time.time(), bench.act(idp)
            while (alert := bench.alerted(user)) is None:
                time.sleep(0.2)
            found.append(alert - acted)
    finally:
        stop.set()
        thread.join()
    return found


def commands(redis: Redis[str]) -> int:
    stats: Mapping[str, Any] = redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def idp_calls(bench: Bench, idp: str) -> int:
    calls = bench.control[idp].get("/_sandbox/calls").json()["calls"]
    return sum(1 for c in calls if not c["route"].startswith("/_sandbox"))


def measured(bench: Bench, idp: str, step: Any) -> tuple[int, int]:
    """(IdP calls, Redis commands) that ``step`` made; INFO's own calls taken off."""
    bench.control[idp].delete("/_sandbox/calls")
    base = commands(bench.redis)
    overhead = commands(bench.redis) - base  # the INFO itself
    before = commands(bench.redis)
    step()
    return idp_calls(bench, idp), commands(bench.redis) - before - overhead


def seed(bench: Bench, idp: str, history: int) -> None:
    """``history`` handled event ids and as many ledger entries (10 per user)."""
    watcher, now = bench.watcher(idp), time.time()
    pipe = bench.redis.pipeline(transaction=False)
    for n in range(history):
        pipe.zadd(watcher.seen_key, {f"past-{n}": now})
        entry = LedgerEntry("verification", now - n, "zd", str(n), f"v{n}", "MFA reset", "verified")
        member = json.dumps(asdict(entry), separators=(",", ":"), sort_keys=True)
        pipe.zadd(f"{PREFIX}:idpledger:{idp}:past{n // 10}", {member: entry.at})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def patient(watcher: Watcher) -> None:
    """One poll, waiting out a 429 as the task's retry would."""
    while True:
        try:
            watcher.poll()
            return
        except RateLimited as exc:
            time.sleep(exc.retry_after + 0.1)


def rest(idp: str) -> None:
    """Entra allows 5 audit-log reads per 10 s: a measured poll starts with the bucket full, so
    it is never a 429 and its retry. (Okta's limit, 20 to 120 a minute, is not reached.)"""
    time.sleep(10.5 if idp == "entra" else 0)


def cost(bench: Bench, histories: list[int]) -> list[tuple[Any, ...]]:
    rows = []
    for idp in ("okta", "entra"):
        for history in histories:
            bench.redis.flushdb()
            bench.fresh()  # the IdP's log as new: this round's reads hold no earlier round's
            seed(bench, idp, history)
            watcher = bench.watcher(idp)
            patient(watcher)  # the cursor
            patient(watcher)  # and the token (Entra's), so the figures are a steady poll's
            rest(idp)
            idle = measured(bench, idp, partial(patient, watcher))
            bench.act(idp)
            time.sleep(bench.entra_sim.audit_delay_seconds if idp == "entra" else 0.2)
            rest(idp)
            one = measured(bench, idp, partial(patient, watcher))
            memory = bench.redis.memory_usage(watcher.seen_key) or 0
            rows.append(
                (idp, f"{history:,}", idle[0], idle[1], one[0], one[1], f"{memory / 2**20:.1f} MiB")
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=60.0, help="idp_poll_interval_seconds")
    parser.add_argument("--okta-delay", type=float, default=0.0)
    parser.add_argument("--entra-delay", type=float, default=120.0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--cost-only", action="store_true")
    args = parser.parse_args()
    bench = Bench(args.okta_delay, 1.0)
    try:
        rows = cost(bench, [0, 10_000, 100_000])
    finally:
        bench.close()
    body = [
        f"### Bypass detection ({now_utc()})",
        "",
        f"`python -m bench.bypass --interval {args.interval:g} --entra-delay "
        f"{args.entra_delay:g} --samples {args.samples}`; {machine()}.",
        "",
        "Poll cost as history grows (past events: handled ids kept in Redis and as many ledger "
        "entries; the simulators' log delay 1 s for this part):",
        "",
        table(
            (
                "IdP",
                "past events",
                "IdP calls, nothing new",
                "Redis commands, nothing new",
                "IdP calls, one new action",
                "Redis commands, one new action",
                "handled ids' memory",
            ),
            rows,
        ),
    ]
    if not args.cost_only:
        found: dict[str, list[float]] = {}
        bench = Bench(args.okta_delay, args.entra_delay)
        try:
            threads = [
                threading.Thread(
                    target=lambda idp=idp: found.__setitem__(
                        idp, latency(bench, idp, args.interval, args.samples)
                    )
                )
                for idp in ("okta", "entra")
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            bench.close()
        delays = {"okta": args.okta_delay, "entra": args.entra_delay}
        latency_rows = [
            (
                idp,
                f"{delays[idp]:g} s",
                f"{args.interval:g} s",
                ", ".join(f"{s:.1f} s" for s in sorted(v)),
                f"{max(v):.1f} s",
                f"{delays[idp] + args.interval:g} s",
                "yes" if max(v) <= delays[idp] + args.interval + 2 else "NO",
            )
            for idp, v in sorted(found.items())
        ]
        body += [
            "",
            "Detection latency: an admin's MFA reset in the console -> the `idp.bypass` audit "
            "event, the poll running every interval as beat schedules it:",
            "",
            table(
                (
                    "IdP",
                    "log delay",
                    "poll interval",
                    "samples",
                    "worst",
                    "bound (delay + interval)",
                    "within (2 s for the poll)",
                ),
                latency_rows,
            ),
        ]
    text = "\n".join(body)
    print(text)
    write_section("bypass", text)


if __name__ == "__main__":
    main()
