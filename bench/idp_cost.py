"""Benchmark, identity providers' cost: the calls one verified lifecycle with an action (the
employee passes, an agent asks for "Reset MFA", Deskgate performs it) makes to each IdP, counted
by the Okta and Entra simulators, and how many such lifecycles a minute each vendor's published
rate limits allow (the simulators' own budgets, written from those limits).

The stack is the demo's IdP part (``sandbox/demo_idp.py``): a Zendesk desk on Okta (as the API
Services app) and a ServiceNow desk on Entra ID. The token requests are counted apart: one token
serves every call until it expires, so they are not a per-lifecycle cost.

Run ``python -m bench.idp_cost`` (under a minute).
"""

from __future__ import annotations

import argparse
from collections import Counter

from bench.harness import machine, now_utc, redis_url, table, write_section
from sandbox.demo_idp import IDP_DESKS, REASON, People, idp_options
from sandbox.entra_throttle import BUDGETS
from sandbox.okta_org import DEFAULT_RATE_LIMITS, bucket_of
from sandbox.stack import Stack, wait_for

WAIT = 60.0
PREFIX, QUEUE = "dgb-idp", "dgbench-idp"
IDP_SYSTEM = {"zendesk": "okta", "servicenow": "entra"}
OKTA_BUCKETS = {
    "user": "`GET /api/v1/users/{id}`",
    "users": "other `/api/v1/users` reads",
    "user_write": "writes to a user",
    "logs": "`/api/v1/logs`",
}


def _lifecycles(stack: Stack, desk: str, n: int) -> tuple[Counter[str], int]:
    """``n`` verified lifecycles with a reset on ``desk``: the IdP calls by route (every answer
    but a 429, which none should be), and the token requests among them."""
    kind, idp, _ = IDP_DESKS[desk]
    driver, people = stack.driver(kind), People(stack)
    emails = [f"cost{i}@{idp.removeprefix('acme_')}.acme.test" for i in range(n)]
    for email in emails:
        people.add(kind, email)
        stack.enrol(email)
    if kind == "servicenow":
        # Graph's audit budget (5 reads per 10 s) would throttle this run, and each 429 reruns
        # the step: lifted here, so the count is the cost alone; the ceiling below applies it.
        limit = {"bucket": "reports", "requests": None, "per_seconds": 10}
        stack.sim["entra"].put("/_sandbox/throttle", json=limit).raise_for_status()
    stack.reset_calls()
    for i, email in enumerate(emails):
        ticket = driver.create_ticket(f"Employee {i}", email, "Lost my phone")
        driver.flag(ticket, REASON)
        wait_for(lambda e=email: stack.sessions(e), WAIT, f"the link to {email}")  # type: ignore[misc]
        stack.complete(stack.sessions(email)[0]["interviewId"], "pass")
        wait_for(lambda t=ticket: driver.view(t).marker == "verified", WAIT, "verified")  # type: ignore[misc]
        driver.ask_action(ticket, "reset_mfa")
        done = f"Reset MFA done in '{idp}'"
        wait_for(lambda t=ticket, d=done: any(d in x for x in driver.notes(t)), WAIT, "the reset")  # type: ignore[misc]
    routes: Counter[str] = Counter()
    tokens = 0
    for call in stack.call_log(IDP_SYSTEM[kind]):
        if call["path"].startswith("/_sandbox"):
            continue
        if call["status"] == 429:
            raise SystemExit(f"{idp} throttled {call['method']} {call['path']}: not a cost")
        if "token" in call["path"]:
            tokens += 1
        else:
            routes[f"{call['method']} {call['route']}"] += 1
    return routes, tokens


def _okta(routes: Counter[str], n: int) -> tuple[str, float]:
    """Calls per lifecycle by Okta's bucket, and the lifecycles a minute the narrowest bucket
    allows on the half of it an app gets by default."""
    per_bucket: Counter[str] = Counter()
    for route, count in routes.items():
        method, path = route.split(" ", 1)
        per_bucket[bucket_of(method, path.replace("<path:id_or_login>", "x"))] += count
    rows, ceiling = [], float("inf")
    for bucket, label in OKTA_BUCKETS.items():
        per = per_bucket[bucket] / n
        allows = DEFAULT_RATE_LIMITS[bucket] / 2 / per if per else float("inf")
        ceiling = min(ceiling, allows)
        rows.append([label, DEFAULT_RATE_LIMITS[bucket], f"{per:g}", _per_minute(allows)])
    text = table(
        ["Okta bucket", "limit a minute", "calls per lifecycle", "lifecycles a minute (half)"], rows
    )
    return text, ceiling


def _entra(routes: Counter[str], n: int) -> tuple[str, float]:
    """Calls per lifecycle against Graph's budgets (per app and tenant), as a minute's worth."""
    writes = sum(c for r, c in routes.items() if not r.startswith("GET ")) / n
    reports = sum(c for r, c in routes.items() if "auditLogs" in r) / n
    every = sum(routes.values()) / n
    rows, ceiling = [], float("inf")
    for bucket, per in (("requests", every), ("writes", writes), ("reports", reports)):
        budget = BUDGETS[bucket]
        assert budget is not None
        a_minute = budget[0] * 60 / budget[1]
        allows = a_minute / per if per else float("inf")
        ceiling = min(ceiling, allows)
        rows.append([bucket, f"{budget[0]:,} per {budget[1]:g} s", f"{per:g}", _per_minute(allows)])
    text = table(["Graph budget", "limit", "calls per lifecycle", "lifecycles a minute"], rows)
    return text, ceiling


def _per_minute(value: float) -> str:
    return "no limit" if value == float("inf") else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=5, help="per IdP")
    args = parser.parse_args()
    n = args.lifecycles
    stack = Stack(idp_options(redis_url(), PREFIX, QUEUE))
    stack.env.pop("DESKGATE_IDPS__ACME_OKTA__API_TOKEN")  # as the demo: the app's own key
    measured = {}
    with stack:
        for desk in IDP_DESKS:
            measured[desk] = _lifecycles(stack, desk, n)
    stack.redis.delete(*stack.redis.scan_iter(f"{PREFIX}:*"), QUEUE)
    okta_desk, entra_desk = IDP_DESKS
    sections = []
    for desk, weigh in ((okta_desk, _okta), (entra_desk, _entra)):
        routes, tokens = measured[desk]
        idp = IDP_DESKS[desk][1]
        calls = table(
            ["call", "per lifecycle"], [[f"`{r}`", f"{c / n:g}"] for r, c in sorted(routes.items())]
        )
        limits, ceiling = weigh(routes, n)
        sections.append(
            f"**{idp}**: {sum(routes.values()) / n:g} calls per lifecycle ({tokens} token "
            f"request(s) over the run, not per lifecycle); the vendor's limits allow about "
            f"**{_per_minute(ceiling)} verified resets a minute**.\n\n{calls}\n\n{limits}"
        )
    body = (
        "### 4c. Identity providers: calls per verified reset, and the vendors' ceilings\n\n"
        f"`python -m bench.idp_cost --lifecycles {n}` — {now_utc()}; {machine()}.\n"
        "Verified lifecycles with an MFA reset, per IdP (the demo's IdP desks).\n\n"
        + "\n\n".join(sections)
    )
    print(body)
    write_section("idp-cost", body)


if __name__ == "__main__":
    main()
