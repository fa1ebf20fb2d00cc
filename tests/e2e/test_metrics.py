"""Metrics on the running system: the web app's /metrics adds up both gunicorn workers, the
worker's /metrics answers, and what the worker counts of its outside calls is what the
simulators served."""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from sandbox.driver import DeskDriver
from sandbox.registry import DESKS
from sandbox.stack import METRICS_TOKEN, Stack, wait_for

pytestmark = pytest.mark.e2e
WAIT = 20.0


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.get(url, headers=headers, timeout=5)  # a new connection: any worker may answer
    resp.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


REFUSED = {"endpoint": "zendesk", "result": "refused", "reason": "unauthenticated"}


def test_the_web_apps_metrics_add_up_both_gunicorn_workers(stack: Stack) -> None:
    url = f"{stack.web_url}/metrics"
    assert httpx.get(url, timeout=5).status_code == 401
    before = total(scrape(url, METRICS_TOKEN), "deskgate_webhook_deliveries_total", **REFUSED)
    sent = 0

    def push() -> None:
        # A fresh connection each, several at once, so both workers take some.
        resp = httpx.post(f"{stack.web_url}/webhooks/zendesk", content=b"{}", timeout=5)
        assert resp.status_code == 401

    def workers_counting() -> int:
        # Each worker writes its own file, holding every delivery series from start-up (at 0):
        # a worker counts once its file holds a refused delivery.
        return sum(
            any(
                value > 0 and "deskgate_webhook_deliveries_total" in key and '"refused"' in key
                for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
            )
            for path in stack.web_metrics_dir.glob("counter_*.db")
        )

    while workers_counting() < 2 and sent < 400:
        threads = [threading.Thread(target=push) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent += len(threads)
    assert workers_counting() == 2, "one gunicorn worker took every request"
    for _ in range(10):  # whichever worker answers the scrape, it reports both workers' counts
        now = total(scrape(url, METRICS_TOKEN), "deskgate_webhook_deliveries_total", **REFUSED)
        assert now - before == sent


def deskgate_calls(stack: Stack, system: str, since: int, desk: DeskDriver | None) -> int:
    """Calls the simulator served since ``since`` that Deskgate made: not its control API (never
    logged) and not the people's (a desk driver's writes); only writes on a desk, whose reads
    the test's own driver makes too."""
    calls = stack.call_log(system)[since:]
    if desk is None:
        return len(calls)
    return sum(1 for c in calls if c["method"] in ("PUT", "PATCH", "POST")
               and not desk.is_driver_call(f"{c['method']} {c['route']}"))  # fmt: skip


def counted(before: Samples, after: Samples, system: str, methods: tuple[str, ...]) -> float:
    return sum(
        v - before.get((n, ls), 0)
        for (n, ls), v in after.items()
        if n == "deskgate_outside_requests_total"
        and ("system", system) in ls
        and dict(ls)["route"].split(" ", 1)[0] in methods
    )


def test_the_workers_metrics_count_what_the_simulators_served(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    wait_for(lambda: stack.worker_busy() == 0, WAIT, "the worker to be idle")
    before = scrape(stack.worker_metrics_url)
    assert total(before, "deskgate_store_up") == 1
    for task in ("start_verification", "check_result", "poll_desk", "sweep"):
        assert ("deskgate_tasks_total", frozenset({("task", task), ("result", "done")})) in before
    since = {system: len(stack.call_log(system)) for system in stack.sim}
    ticket = desk.create_ticket("Jane Employee", employee, "Please reset my MFA, new phone")
    desk.flag(ticket)
    wait_for(lambda: desk.notes(ticket), WAIT, f"the gate note on {ticket}")
    [session] = stack.sessions(employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    wait_for(lambda: stack.worker_busy() == 0, WAIT, "the worker to finish")
    after = scrape(stack.worker_metrics_url)
    kind = next(k for k in DESKS if stack.driver(k) is desk)
    everything = ("GET", "POST", "PUT", "PATCH", "DELETE")
    assert counted(before, after, "incode", everything) == deskgate_calls(
        stack, "incode", since["incode"], None
    )
    assert counted(before, after, kind, ("PUT", "PATCH", "POST")) == deskgate_calls(
        stack, kind, since[kind], desk
    )
    assert total(after, "deskgate_tasks_total", task="start_verification", result="done") > total(
        before, "deskgate_tasks_total", task="start_verification", result="done"
    )
