"""Benchmark 3, webhook ingest: authenticated Incode and Zendesk webhooks per second, and their
latency, against the webhook app under gunicorn, next to a bare Flask endpoint served by a
second gunicorn with the same settings, in the same run.

- peak: a closed loop (wrk, or the Python generator without it) for ``--duration`` seconds per
  endpoint, ``--rounds`` times interleaved; the ratio is each endpoint's rate / the bare one's.
- 500 requests/s: an open loop at a fixed rate; latency counted from each request's due time.

Every request is one the app accepts: Zendesk pushes carry a fresh valid signature; Incode
webhooks carry the secret header and name a distinct session that the store knows (seeded), so
each one goes the whole way: authenticate, parse, look up, dedupe, enqueue. The worker is
stopped first, so the CPU is the web app's and the generator's only.

Run ``python -m bench.ingest`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime

import httpx

from bench.harness import (
    KEY_PREFIX,
    QUEUE,
    BenchStack,
    CpuMeter,
    batched,
    children_of,
    machine,
    met,
    ms,
    now_utc,
    table,
    write_section,
)
from bench.loadgen import (
    LoadResult,
    MakeRequest,
    Request,
    closed_loop,
    open_loop,
    wrk,
    wrk_available,
    wrk_script,
)
from sandbox import incode, zendesk
from sandbox.stack import Child, free_port, wait_until
from worker.lifecycle import State
from worker.lifecycle.store import Verification

TARGET_RATIO = 0.5
TARGET_RATE = 500.0
TARGET_P99 = 0.050
PER_RUN = 60_000  # session ids reserved per wrk thread and run (more than it can send)
WRK_THREADS = 2


def _zendesk_request(i: int) -> Request:
    """What the Zendesk trigger sends: a signed push naming a ticket."""
    body = json.dumps({"ticket_id": str(1 + i % 5000), "event": "trigger"}).encode()
    stamp = datetime.now(UTC).strftime(zendesk.TIMESTAMP_FORMAT)
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": zendesk.sign(
            zendesk.ZendeskSimConfig.webhook_secret, stamp, body
        ),
    }
    return "/webhooks/zendesk", headers, body


def _incode_headers() -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "x-incode-secret": incode.IncodeSimConfig.webhook_secret,
    }


def _incode_body(interview: str) -> bytes:
    return json.dumps(
        {"eventType": "SESSION_SUCCEEDED", "interviewId": interview, "onboardingStatus": "OK"}
    ).encode()


def _seed(bs: BenchStack, interviews: list[str]) -> None:
    """Verifications waiting for Incode, one per session id, as the worker leaves them."""
    now = time.time()
    pipe = bs.redis.pipeline(transaction=False)
    for chunk in batched(interviews, 2000):
        for interview in chunk:
            vid = f"b{interview}"
            v = Verification(
                id=vid, desk="acme_zendesk", ticket_id="1", ticket_display="#1",
                requester_id="1001", reason="MFA reset", state=State.SENT, created_at=now,
                updated_at=now, interview_id=interview, channel="EMAIL",
                destination="e***@acme.test", expires_at=now + 1800, gated=True,
            )  # fmt: skip
            record: dict[str | bytes, str] = {
                k: ("1" if v else "") if isinstance(v, bool) else str(v) for k, v in
                asdict(v).items()}  # fmt: skip
            record["state"] = v.state.value
            pipe.hset(f"{KEY_PREFIX}:v:{vid}", mapping=record)
            pipe.set(f"{KEY_PREFIX}:iv:{interview}", vid)
        pipe.execute()


def _wrk_incode_script(offset: int) -> str:
    """Each wrk thread numbers its own sessions: ``w<run offset + thread * PER_RUN + n>``."""
    headers = ", ".join(f'["{k}"]="{v}"' for k, v in _incode_headers().items())
    return f"""
local threads = {{}}
setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local n = 0
request = function()
  n = n + 1
  local id = string.format("w%d", {offset} + tid * {PER_RUN} + n)
  local body = '{{"eventType":"SESSION_SUCCEEDED","interviewId":"' .. id .. '"}}'
  return wrk.format("POST", "/webhooks/incode", {{{headers}}}, body)
end
"""


def _peak(
    name: str, url: str, run: int, use_wrk: bool, connections: int, duration: float
) -> LoadResult:
    if name == "incode":
        if use_wrk:
            script = wrk_script(lua_request=_wrk_incode_script(run * WRK_THREADS * PER_RUN))
            return wrk(url, script, connections, duration, WRK_THREADS)
        base = run * WRK_THREADS * PER_RUN

        def make_incode(i: int) -> Request:
            return "/webhooks/incode", _incode_headers(), _incode_body(f"w{base + i + 1}")

        return closed_loop(url, make_incode, connections, duration)
    make: MakeRequest = (
        _zendesk_request
        if name == "zendesk"
        else (lambda i: ("/webhooks/bare", {"Content-Type": "application/json"}, b"{}"))
    )
    if use_wrk:
        return wrk(url, wrk_script([make(i) for i in range(200)]), connections, duration)
    return closed_loop(url, make, connections, duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per peak run")
    parser.add_argument("--rounds", type=int, default=3, help="peak runs per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="fixed-rate run, req/s")
    parser.add_argument("--rate-duration", type=float, default=20)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    use_wrk = args.tool == "wrk" or (args.tool == "auto" and wrk_available())
    peak_runs = args.rounds
    fixed = int(args.rate * args.rate_duration)

    with BenchStack(kinds=["zendesk"], concurrency=4) as bs:
        bs.s.children["worker"].stop()  # nothing consumes: ingest only
        web = bs.s.children["web"]
        bare_port = free_port()
        web_args = web.proc.args
        assert isinstance(web_args, list)
        bare_args = [
            str(a) if a != "webhooks.app:create_app()" else "bench.bare_app:create_app()"
            for a in web.proc.args  # type: ignore[union-attr]
        ]
        bare_args[bare_args.index("--bind") + 1] = f"127.0.0.1:{bare_port}"
        bare = Child("bare", bare_args, bs.s.env, bs.s.workdir / "bare.log")
        urls = {
            "bare": f"http://127.0.0.1:{bare_port}",
            "zendesk": bs.s.web_url,
            "incode": bs.s.web_url,
        }
        try:
            wait_until(lambda: _answers(urls["bare"]), 30, every=0.1)
            wrk_ids = [
                f"w{r * WRK_THREADS * PER_RUN + t * PER_RUN + n}"
                for r in range(peak_runs)
                for t in range(WRK_THREADS if use_wrk else 1)
                for n in range(1, (PER_RUN if use_wrk else PER_RUN * WRK_THREADS) + 1)
            ]
            _seed(bs, wrk_ids + [f"o{i}" for i in range(fixed)])
            groups = bs.processes()
            del groups["webhook app (gunicorn)"], groups["worker (Celery)"]
            # Per gunicorn process: keep-alive connections stick to the worker that accepted
            # them, so one worker can be saturated while the other idles.
            for app, pid in (("webhook app", web.proc.pid), ("bare app", bare.proc.pid)):
                groups[f"{app} master"] = [pid]
                for i, child in enumerate(sorted(children_of(pid)), 1):
                    groups[f"{app} worker {i}"] = [child]
            peaks: dict[str, list[LoadResult]] = {k: [] for k in urls}
            accepted: dict[str, int] = {k: 0 for k in urls}
            cpu: dict[str, CpuMeter] = {}
            for run in range(peak_runs):
                for name, url in urls.items():
                    bs.redis.delete(QUEUE)
                    meter = CpuMeter(groups).start()
                    result = _peak(name, url, run, use_wrk, args.connections, args.duration)
                    cpu[name] = meter.stop()
                    peaks[name].append(result)
                    accepted[name] += int(bs.redis.llen(QUEUE))
                    print(f"peak {name}: {result.rate:.0f} req/s ({result.tool})", flush=True)
            fixed_runs: dict[str, LoadResult] = {}
            fixed_cpu: dict[str, CpuMeter] = {}
            for name, url in urls.items():
                bs.redis.delete(QUEUE)
                make = _fixed_maker(name)
                meter = CpuMeter(groups).start()
                fixed_runs[name] = open_loop(url, make, args.rate, args.rate_duration)
                fixed_cpu[name] = meter.stop()
                print(f"{args.rate:.0f}/s {name}: p99 {ms(fixed_runs[name].q(99))}", flush=True)
            bs.redis.delete(QUEUE)
        finally:
            bare.stop()

    text = report(peaks, accepted, fixed_runs, cpu, fixed_cpu, args, use_wrk)
    print(text)
    if not args.no_write:
        write_section("ingest", text)


def _fixed_maker(name: str) -> MakeRequest:
    if name == "incode":
        return lambda i: ("/webhooks/incode", _incode_headers(), _incode_body(f"o{i}"))
    if name == "zendesk":
        return _zendesk_request
    return lambda i: ("/webhooks/bare", {"Content-Type": "application/json"}, b"{}")


def _answers(url: str) -> bool:
    try:
        return httpx.post(f"{url}/webhooks/bare", content=b"{}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


LABELS = {
    "bare": "bare Flask endpoint",
    "zendesk": "Zendesk push (HMAC-signed)",
    "incode": "Incode webhook (secret header)",
}


def report(
    peaks: dict[str, list[LoadResult]],
    accepted: dict[str, int],
    fixed: dict[str, LoadResult],
    cpu: dict[str, CpuMeter],
    fixed_cpu: dict[str, CpuMeter],
    args: argparse.Namespace,
    use_wrk: bool,
) -> str:
    bare_rate = sum(r.rate for r in peaks["bare"]) / len(peaks["bare"])
    rows = []
    for name, results in peaks.items():
        rate = sum(r.rate for r in results) / len(results)
        ok_total = sum(r.ok for r in results)
        ratio = rate / bare_rate if bare_rate else 0.0
        f = fixed[name]
        is_hook = name != "bare"
        ok = ratio >= TARGET_RATIO and f.q(99) <= TARGET_P99 and not f.errors if is_hook else None
        rows.append(
            [
                LABELS[name],
                f"**{rate:,.0f}/s** ({', '.join(f'{r.rate:,.0f}' for r in results)})",
                f"{ms(results[-1].q(50))} / {ms(results[-1].q(99))}",
                f"{ratio:.2f}" if is_hook else "1",
                f"{accepted[name]:,} of {ok_total:,}" if is_hook else "—",
                f"{ms(f.q(50))} / **{ms(f.q(99))}** / {ms(f.q(100))}",
                f"{f.ok:,}/{f.sent:,}, {f.errors} errors",
                f"≥ {TARGET_RATIO} x bare; p99 < {ms(TARGET_P99)}" if is_hook else "(yardstick)",
                met(ok),
            ]
        )
    headers = [
        "endpoint",
        "peak rate (rounds)",
        "peak p50 / p99",
        "ratio",
        "enqueued",
        f"at {args.rate:.0f}/s: p50 / p99 / max",
        f"at {args.rate:.0f}/s: answered",
        "target",
        "met?",
    ]
    tool = "wrk (2 threads)" if use_wrk else "the Python closed loop (bench/loadgen.py)"
    cpu_lines = "\n".join(f"- {LABELS[k]}, peak: {m.summary()}" for k, m in cpu.items())
    cpu_lines += "\n" + "\n".join(
        f"- {LABELS[k]}, {args.rate:.0f}/s: {m.summary()}" for k, m in fixed_cpu.items()
    )
    return f"""### 3. Webhook ingest

`python -m bench.ingest` — {now_utc()}; {machine()}.
Both apps under gunicorn with `deskgate web`'s settings (2 gevent workers), same machine,
same run. Peak: {tool}, {args.connections} keep-alive connections, {args.duration:g} s x
{args.rounds} rounds per endpoint, interleaved (rate = mean of rounds; latency of the last).
Fixed rate: {args.rate:.0f} requests/s for {args.rate_duration:g} s, Python open loop, latency
from each request's due time. *Enqueued* counts the tasks the worker would have received (the
queue's length), proving each accepted request went the whole way.

{table(headers, rows)}

CPU per part, during the last peak round and during the fixed-rate run of each endpoint (the
Python generator runs in "bench"; wrk is not counted):

{cpu_lines}
"""


if __name__ == "__main__":
    main()
