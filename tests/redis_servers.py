"""Private ``redis-server`` children on free loopback ports, for the tests that need a Redis of
their own shape: over TLS with an ACL user, or a primary, a replica and sentinels watching them."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from sandbox.stack import free_port, wait_for

MASTER = "dgmaster"


class RedisProcess:
    """One ``redis-server`` (or ``redis-server --sentinel``) child; ``client()`` reaches it
    directly over plain TCP unless ``client_options`` say otherwise."""

    def __init__(
        self,
        workdir: Path,
        args: list[str],
        *,
        sentinel: bool = False,
        tls: bool = False,
        **client_options: Any,
    ) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (.ci/run installs it)"
        self.port = free_port()
        self.client_options = client_options
        home = workdir / str(self.port)  # each its own files (append-only, sentinel config)
        home.mkdir()
        self.log = home / "redis.log"
        where = [f"port {self.port}", "bind 127.0.0.1", f"dir {home}", f"logfile {self.log}"]
        if sentinel:  # a sentinel rewrites its config file as it learns: it needs one
            (home / "sentinel.conf").write_text("\n".join([*where, *args]) + "\n")
            command = [binary, str(home / "sentinel.conf"), "--sentinel"]
        else:
            ports = (
                ["--port", "0", "--tls-port", str(self.port)] if tls else ["--port", str(self.port)]
            )
            command = [
                binary,
                *ports,
                "--bind",
                "127.0.0.1",
                "--dir",
                str(home),
                "--save",
                "",
                "--logfile",
                str(self.log),
                *args,
            ]
        self.command = command
        self.start()

    def start(self) -> None:
        """Start it (again, after ``stop`` or ``kill``: same port, same files)."""
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        wait_for(self.answers, 10, f"redis-server on {self.port} to answer")

    def client(self) -> Redis[str]:
        options = {"port": self.port, "socket_timeout": 2, **self.client_options}
        return Redis("127.0.0.1", decode_responses=True, **options)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            said = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"redis-server on {self.port} exited:\n{said[-2000:]}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the replicas or the clients."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class SentinelSet:
    """A primary, a replica and three sentinels that fail over within a second or two."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess] = field(default_factory=list)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/{db}?master={MASTER}"

    def primary_port(self) -> int:
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    _, port = client.sentinel_get_master_addr_by_name(MASTER)  # type: ignore[no-untyped-call]
                    return int(port)
            except RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def ready(self) -> bool:
        """Every sentinel knows the replica and the other sentinels: a failover can happen."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(MASTER)  # type: ignore[no-untyped-call]
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
                replicas = client.sentinel_slaves(MASTER)  # type: ignore[no-untyped-call]
                if not any(r["master-link-status"] == "ok" for r in replicas):
                    return False
        return True

    def node(self, port: int) -> RedisProcess:
        return self.primary if self.primary.port == port else self.replica


@contextmanager
def sentinel_set(workdir: Path, down_after_ms: int = 1000) -> Iterator[SentinelSet]:
    """Start them, wait until a failover is possible, and stop them all at the end."""
    with ExitStack() as stack:
        durable = ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy",
                   "noeviction"]  # fmt: skip
        primary = RedisProcess(workdir, durable)
        stack.callback(primary.stop)
        replica = RedisProcess(workdir, [*durable, "--replicaof", "127.0.0.1", str(primary.port)])
        stack.callback(replica.stop)
        nodes = SentinelSet(primary, replica)
        for _ in range(3):
            sentinel = RedisProcess(
                workdir,
                [
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                    f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
                    f"sentinel failover-timeout {MASTER} 10000",
                    f"sentinel parallel-syncs {MASTER} 1",
                ],
                sentinel=True,
            )
            stack.callback(sentinel.stop)
            nodes.sentinels.append(sentinel)
        wait_for(nodes.ready, 30, "the sentinels to know the replica and each other", every=0.2)
        yield nodes
