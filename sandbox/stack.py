"""The whole system on one machine: simulators, the webhook app under gunicorn, a Celery worker
and (optionally) beat, wired by a generated config file. The demo, ``deskgate dev`` and the
end-to-end tests all run on this.

The simulators are the ones ``sandbox.registry`` lists, each wired from its ``Simulator``: its
config block and secrets go into Deskgate's config and environment, its driver acts on it. The desk
simulators start empty of webhooks and triggers: before Deskgate's processes start, the stack runs
``deskgate setup <desk> --env-file`` for every configured desk whose kind has a ``setup``, as an
operator would, and the processes read the secrets it stored. They run
as threads of the calling process (real HTTP servers on loopback; ``StackOptions.serve`` may serve
them otherwise); Deskgate's own parts run as child processes exactly as in production, so a test
sees what an operator would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from redis import Redis

from config.redis_url import broker
from connectors.registry import KINDS
from sandbox.common import Server, pooled_client, serve
from sandbox.driver import DeskDriver
from sandbox.options import Running, StackOptions, Wiring
from sandbox.registry import DESKS, SIMULATORS
from worker.commands.cli import gunicorn_args
from worker.redis_client import connect

__all__ = [
    "METRICS_TOKEN", "SECRETS", "Child", "Stack", "StackOptions", "free_port", "wait_for",
    "wait_until",
]  # fmt: skip

NOTE_SECRET = "sandbox-note-sealing-secret"
METRICS_TOKEN = "sandbox-metrics-token"  # the web app's /metrics: Authorization: Bearer <this>
SECRETS = {
    "DESKGATE_NOTE_SECRET": NOTE_SECRET,
    "DESKGATE_METRICS_TOKEN": METRICS_TOKEN,
    **{name: value for sim in SIMULATORS.values() for name, value in sim.secrets.items()},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy, and return that (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """``wait_until``, raising naming ``what`` on timeout."""
    value = wait_until(check, timeout, every)
    if not value:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
    return value


class Child:
    """A child process whose output is kept (and can be waited on for a line)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.log = log
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as out:
            for line in self.proc.stdout:
                self.lines.append(line)
                out.write(line)
                out.flush()

    def wait_for_line(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                tail = "".join(self.lines[-20:])
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")
            return any(text in line for line in self.lines)

        wait_for(seen, timeout, f"{self.name} to say {text!r}", every=0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)


class Stack:
    """The simulators of ``sandbox.registry``, the webhook app and a worker (and beat), wired."""

    def __init__(self, options: StackOptions, workdir: Path | None = None) -> None:
        self.options = options
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="deskgate-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.servers: list[Running] = []
        self.children: dict[str, Child] = {}
        host = options.host
        parts = ("web", "metrics", *SIMULATORS)  # metrics: the worker's /metrics
        self.ports = {part: options.ports.get(part) or free_port() for part in parts}
        self.web_url = f"http://{host}:{self.ports['web']}"
        self.worker_metrics_url = f"http://{host}:{self.ports['metrics']}/metrics"
        self.urls = {name: f"http://{host}:{self.ports[name]}" for name in SIMULATORS}
        # Each simulator's config, as served and as its driver and the dev banner read it.
        self.wiring = {
            name: Wiring(self.urls[name], f"{self.web_url}/webhooks", options)
            for name in SIMULATORS
        }
        self.app_configs = {
            name: sim.app_config(self.wiring[name]) for name, sim in SIMULATORS.items()
        }
        self.redis: Redis[str] = connect(options.redis_url)  # any form, Sentinel too
        self.config_path = self.workdir / "deskgate.toml"
        self.web_metrics_dir = self.workdir / "web-metrics"
        self.env = self._env()
        broker_url, sentinel_options = broker(options.redis_url)
        self.producer = Celery("deskgate-sandbox", broker=broker_url)
        self.producer.conf.update(
            task_serializer="json",
            accept_content=["json"],
            task_default_queue=options.queue,
            broker_transport_options=sentinel_options,
        )
        self.sim = {
            name: pooled_client(base_url=self.urls[name], timeout=sim.client_timeout)
            for name, sim in SIMULATORS.items()
        }
        self._drivers: dict[str, DeskDriver] = {}
        self.env_file = self.workdir / "deskgate.env"  # what `deskgate setup` stored
        self.setup_output: list[str] = []  # what each `deskgate setup` printed

    # -- wiring ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DESKGATE_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        env.update(SECRETS)
        env.update(
            DESKGATE_CONFIG=str(self.config_path),
            REDIS_URL=self.options.redis_url,
            # From the environment, not the file, so a test can take it away (doctor's table).
            DESKGATE_PUBLIC_URL=self.web_url,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.options.extra_env)
        return env

    def config_text(self) -> str:
        o = self.options
        blocks = "\n".join(sim.config_text(self.wiring[name]) for name, sim in SIMULATORS.items())
        return f"""# Generated by sandbox/stack.py; secrets come from the environment.
key_prefix = "{o.key_prefix}"
queue = "{o.queue}"
log_format = "{o.log_format}"
sweep_interval_seconds = {o.sweep_interval_seconds}
idp_poll_interval_seconds = {o.idp_poll_interval_seconds}
http_timeout_seconds = 5
http_deadline_seconds = {o.http_deadline_seconds}
task_time_limit_seconds = {o.task_time_limit_seconds}
metrics_enabled = {str(o.metrics).lower()}
metrics_port = {self.ports["metrics"]}
metrics_host = "{o.host}"

{blocks}{o.extra_config}"""

    def _serve(self, name: str, config: Any, host: str, port: int) -> Server:
        return serve(SIMULATORS[name].create_app(config), host, port)

    def start(self) -> Stack:
        o = self.options
        self.serve_simulators()
        self.provision()
        python = sys.executable
        # The web workers' metrics files: the web app's alone (the worker has its own registry).
        web_env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.web_metrics_dir)}
        self.children["web"] = Child(
            "web",
            [python, *gunicorn_args(f"{o.host}:{self.ports['web']}")],  # as `deskgate web` does
            web_env,
            self.workdir / "web.log",
        )  # fmt: skip
        self.start_worker(wait=False)
        if o.beat:
            self.start_beat()
        self.children["worker"].wait_for_line(" ready.", timeout=60)
        wait_for(self._web_ready, 30, "the webhook app to answer /readyz")
        return self

    def serve_simulators(self) -> None:
        """Write Deskgate's config and serve every simulator (nothing of Deskgate runs yet)."""
        o = self.options
        self.config_path.write_text(self.config_text())
        serve_simulator = o.serve or self._serve
        for name, config in self.app_configs.items():
            self.servers.append(serve_simulator(name, config, o.host, self.ports[name]))

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``deskgate <args>`` as an operator runs it: Deskgate's config and environment."""
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "worker.commands.cli", *args],
            env={**self.env, **env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def setup_command(self, desk: str, *flags: str) -> subprocess.CompletedProcess[str]:
        """``deskgate setup <desk> ...`` with the desk simulator's admin in
        ``DESKGATE_ADMIN_*``."""
        kind = self.desk_kinds()[desk]
        admin = SIMULATORS[kind].admin
        assert admin is not None, f"the {kind} simulator has no admin for `deskgate setup`"
        admin_env = {"DESKGATE_ADMIN_USER": admin[0], "DESKGATE_ADMIN_SECRET": admin[1]}
        return self.command("setup", desk, *flags, **admin_env)

    def write_command_env(self) -> Path:
        """An env file with the configuration Deskgate's processes run with (the sandbox's own
        secrets only), so ``deskgate doctor``, ``report`` and ``audit export`` can be tried by
        hand against this stack: ``set -a; . <file>; set +a``."""
        path = self.workdir / "deskgate-commands.env"
        lines = [f"{k}={v}" for k, v in sorted(self.env.items()) if k.startswith("DESKGATE_")]
        lines.append(f"REDIS_URL={self.options.redis_url}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def desk_kinds(self) -> dict[str, str]:
        """Each configured desk's kind, from the generated config."""
        desks = tomllib.loads(self.config_path.read_text()).get("desks", {})
        return {name: str(block["kind"]) for name, block in desks.items()}

    def provision(self) -> None:
        """``deskgate setup --env-file`` for every configured desk whose kind has one (on the
        empty simulators: the webhook, the trigger, the macros...), then the secrets it stored
        into the environment Deskgate's processes start with. With ``provision="update_set"``
        a desk whose simulator imports update sets gets only the file ``deskgate setup
        --update-set`` writes, imported as an admin would, and the manual steps after it."""
        desks = tomllib.loads(self.config_path.read_text()).get("desks", {})
        for desk, block in desks.items():
            kind = str(block["kind"])
            if kind not in KINDS or KINDS[kind].setup is None or not SIMULATORS[kind].admin:
                continue
            importer = SIMULATORS[kind].import_update_set
            if self.options.provision == "update_set" and importer is not None:
                path = self.workdir / f"{desk}-update-set.xml"
                self._setup(desk, "--update-set", path)
                importer(self.urls[kind], path.read_bytes(), block)
            else:
                self._setup(desk, "--env-file", self.env_file)
        if self.env_file.exists():
            for line in self.env_file.read_text().splitlines():
                name, _, value = line.partition("=")
                if name.strip() and not name.startswith("#"):
                    self.env[name.strip()] = value

    def _setup(self, desk: str, flag: str, path: Path) -> None:
        done = self.setup_command(desk, flag, str(path))
        self.setup_output.append(f"$ deskgate setup {desk} {flag} {path.name}")
        self.setup_output += done.stdout.splitlines()
        if done.returncode != 0:
            raise RuntimeError(f"deskgate setup {desk} failed:\n{done.stdout}{done.stderr}")

    def start_worker(self, wait: bool = True) -> None:
        """Start (or restart) the Celery worker child process."""
        o = self.options
        self.children["worker"] = Child(
            "worker",
            [sys.executable, "-m", "celery", "-A", "worker.main", "--quiet", "worker",
             "--pool", "threads",
             "--concurrency", str(o.worker_concurrency), "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"deskgate-{self.ports['web']}@%h"],
            self.env,
            self.workdir / "worker.log",
        )  # fmt: skip
        if wait:
            self.children["worker"].wait_for_line(" ready.", timeout=60)

    def start_beat(self) -> None:
        """Start (or restart) beat: the desk polls and the sweep on their schedule."""
        self.children["beat"] = Child(
            "beat",
            [sys.executable, "-m", "celery", "-A", "worker.main", "--quiet", "beat",
             "--loglevel", "INFO",
             "--schedule", str(self.workdir / "beat-schedule")],
            self.env,
            self.workdir / "beat.log",
        )  # fmt: skip

    def kill_worker(self) -> None:
        """SIGKILL the worker: no shutdown, no acks, whatever it was doing stops mid-step."""
        worker = self.children["worker"]
        worker.proc.kill()
        worker.stop()

    def _web_ready(self) -> bool:
        if self.children["web"].proc.poll() is not None:
            raise RuntimeError("web exited:\n" + "".join(self.children["web"].lines[-20:]))
        try:
            return httpx.get(f"{self.web_url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()
        for server in self.servers:
            server.stop()
        for driver in self._drivers.values():
            driver.close()
        for client in self.sim.values():
            client.close()
        self.redis.close()
        self.producer.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- acting like the people and systems around Deskgate ---------------------------------

    def send_task(self, name: str, *args: Any) -> None:
        """Enqueue a Deskgate task as beat would (to run a poll or a sweep on demand)."""
        self.producer.send_task(name, args=list(args))

    def enrol(self, login_hint: str) -> None:
        self.sim["incode"].post("/_sandbox/employees", json={"loginHint": login_hint})

    def sessions(self, login_hint: str | None = None) -> list[dict[str, Any]]:
        params = {"loginHint": login_hint} if login_hint else None
        data: list[dict[str, Any]] = (
            self.sim["incode"].get("/_sandbox/sessions", params=params).json()["sessions"]
        )
        return data

    def complete(self, interview_id: str, outcome: str, **extra: Any) -> dict[str, Any]:
        resp = self.sim["incode"].post(
            f"/_sandbox/sessions/{interview_id}/complete", json={"outcome": outcome, **extra}
        )
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def driver(self, kind: str) -> DeskDriver:
        """People acting on the desk simulator ``kind`` (one driver per kind, kept)."""
        if kind not in DESKS:
            raise ValueError(f"no desk simulator {kind!r} in the sandbox: {', '.join(DESKS)}")
        if kind not in self._drivers:
            make = SIMULATORS[kind].driver
            assert make is not None  # DESKS holds the simulators with a driver
            self._drivers[kind] = make(self.sim[kind], self.app_configs[kind])
        return self._drivers[kind]

    def calls(self, system: str) -> dict[str, int]:
        counts: dict[str, int] = self.sim[system].get("/_sandbox/calls").json()["counts"]
        return counts

    def reset_calls(self) -> None:
        for client in self.sim.values():
            client.delete("/_sandbox/calls").raise_for_status()

    def call_log(self, system: str) -> list[dict[str, Any]]:
        """Every call a simulator served, oldest first: method, path, route, status, ``at``."""
        log: list[dict[str, Any]] = self.sim[system].get("/_sandbox/calls").json()["calls"]
        return log

    # -- faults ------------------------------------------------------------------------------

    def fault(self, system: str, path_prefix: str, **fault: Any) -> None:
        """The next matching requests fail or stall (``sandbox.common.Fault``'s fields)."""
        body = {"path_prefix": path_prefix, **fault}
        self.sim[system].post("/_sandbox/faults", json=body).raise_for_status()

    def skew_clock(self, system: str, seconds: float) -> None:
        """The simulator's answers carry a Date this many seconds off (``clear_faults`` ends it)."""
        self.sim[system].put("/_sandbox/date_skew", json={"seconds": seconds}).raise_for_status()

    def pending_faults(self, system: str) -> list[dict[str, Any]]:
        """Faults no request has taken yet."""
        faults: list[dict[str, Any]] = self.sim[system].get("/_sandbox/faults").json()["faults"]
        return faults

    def clear_faults(self) -> None:
        """Every simulator back to normal: no faults, no rate limit, no added latency or skew."""
        for client in self.sim.values():
            client.put("/_sandbox/date_skew", json={"seconds": 0}).raise_for_status()
            client.delete("/_sandbox/faults").raise_for_status()
            client.delete("/_sandbox/rate_limit").raise_for_status()
            client.put("/_sandbox/latency", json={"seconds": 0}).raise_for_status()

    # -- Deskgate's own records ----------------------------------------------------------------

    def logged(self, child: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of a child process (``web``, ``worker``) with this ``event``."""
        found = []
        for line in list(self.children[child].lines):
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    def worker_busy(self) -> int:
        """Tasks queued or held by the worker: running, prefetched, or waiting out a retry's
        countdown (which the queue alone does not show). A worker that does not answer is busy."""
        inspect = self.producer.control.inspect(timeout=2.0, limit=1)  # one worker
        held = self.redis.llen(self.options.queue)
        for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            if not reply:
                return held + 1
            held += sum(len(tasks) for tasks in reply.values())
        return held

    def received(self, task: str) -> int:
        """How many times the worker has received ``task`` (retries included)."""
        marker = f"Task {task}["
        # Celery's lines are JSON records like Deskgate's own (config/logging.py); the event
        # ends "received".
        return sum(1 for line in list(self.children["worker"].lines) if marker in line
                   and (line.rstrip().endswith("received") or '] received"' in line))  # fmt: skip
