"""Scenario 7: slow clients. 200 connections trickle, a byte every two seconds, for a minute:
half send a push's headers with a large Content-Length and trickle the body, half trickle the
headers themselves; each one the server drops comes straight back (an attacker keeps the
pressure on). Meanwhile ``/healthz`` and genuine signed pushes from both desks must each be
answered within one second, and every pushed ticket gated.

This is what the web server's worker class decides: a thread per connection (gthread) is held by
every trickling body, so 16 of them stopped the app; an event loop (gevent) spends a greenlet on
each, the body deadline drops a slow body with 408 after ``webhook_body_timeout_seconds`` and
gunicorn closes a head not complete within the keep-alive window (5 s).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import httpx
import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack
from tests.faults.conftest import Observe, People
from tests.faults.lifecycles import open_flagged, wait_markers
from tests.faults.test_bad_input import push_body, signed

pytestmark = pytest.mark.faults

SLOW_CLIENTS = 200
ATTACK_SECONDS = 60.0
TRICKLE_EVERY = 2.0  # seconds between two bytes of one slow body
CLAIMED_LENGTH = 60000  # under webhook_max_body_bytes, so the server waits for it all
ANSWER_WITHIN = 1.0
PROBE_EVERY = 1.0
TICKETS_PER_DESK = 15  # one genuine push each, spread over the minute
WAIT = 60.0


@dataclass
class Trickle:
    """The attacker: ``SLOW_CLIENTS`` sockets kept open and trickling, reopened when dropped.
    Even slots send a whole head and trickle the body; odd slots trickle the head itself."""

    host: str
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    opened: int = 0
    dropped: int = 0  # connections the server closed
    answered_408: int = 0  # slow bodies cut off with 408
    heads_dropped: int = 0  # slow heads closed by the server
    errors: list[str] = field(default_factory=list)

    def _open(self, slot: int) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        sock.setblocking(False)
        head = f"POST /webhooks/zendesk HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if slot % 2:
            head += "X-Slow: "  # the head never ends
        else:
            head += f"Content-Type: application/json\r\nContent-Length: {CLAIMED_LENGTH}\r\n\r\n{{"
        sock.sendall(head.encode())
        self.opened += 1
        return sock

    def _answered(self, slot: int, sock: socket.socket) -> None:
        """The server wrote or closed: note what it said and count the drop."""
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if slot % 2:
            self.heads_dropped += 1
        elif data.startswith((b"HTTP/1.1 408", b"HTTP/1.0 408")):
            self.answered_408 += 1
        self.dropped += 1
        sock.close()

    def run(self) -> None:
        socks: list[socket.socket] = []
        try:
            socks = [self._open(slot) for slot in range(SLOW_CLIENTS)]
            while not self.stop.wait(TRICKLE_EVERY):
                readable, _, _ = select.select(socks, [], [], 0)
                for sock in readable:
                    slot = socks.index(sock)
                    self._answered(slot, sock)
                    socks[slot] = self._open(slot)
                for slot, sock in enumerate(socks):
                    try:
                        sock.send(b"a" if slot % 2 else b" ")
                    except OSError:
                        self.dropped += 1
                        sock.close()
                        socks[slot] = self._open(slot)
        except OSError as exc:  # the attacker itself failing would make the scenario vacuous
            self.errors.append(repr(exc))
        finally:
            for sock in socks:
                sock.close()


def timed(send: Callable[[], httpx.Response]) -> float:
    """Seconds until an answer, on a fresh connection each time (as a desk or a prober would)."""
    began = time.monotonic()
    try:
        resp = send()
        assert resp.status_code == 200, f"{resp.status_code} {resp.text}"
    except httpx.TimeoutException:
        return float("inf")
    return time.monotonic() - began


def test_given_200_slow_clients_then_health_and_genuine_pushes_answer_within_a_second(
    stack: Stack, people: People, observe: Observe
) -> None:
    desks: list[DeskDriver] = [stack.driver("zendesk"), stack.driver("servicenow")]
    tickets = {
        desk.system: open_flagged(desk, people(TICKETS_PER_DESK), announce=False) for desk in desks
    }
    pushes = [(desk, ticket) for pair in zip(*tickets.values(), strict=True) for desk, ticket in
              zip(desks, pair, strict=True)]  # fmt: skip
    url = urlsplit(stack.web_url)
    attacker = Trickle(url.hostname or "127.0.0.1", url.port or 80)
    thread = threading.Thread(target=attacker.run, name="slow-clients", daemon=True)
    thread.start()
    health: list[float] = []
    delivered: list[float] = []
    try:
        time.sleep(TRICKLE_EVERY * 2)  # every slow client connected and trickling
        ends = time.monotonic() + ATTACK_SECONDS - TRICKLE_EVERY * 2
        while time.monotonic() < ends:
            health.append(
                timed(lambda: httpx.get(f"{stack.web_url}/healthz", timeout=2 * ANSWER_WITHIN))
            )
            if pushes:
                desk, ticket = pushes.pop()
                body = push_body(desk, ticket)
                delivered.append(
                    timed(
                        partial(
                            httpx.post,
                            f"{stack.web_url}/webhooks/{desk.system}",
                            content=body,
                            headers=signed(desk, body),
                            timeout=2 * ANSWER_WITHIN,
                        )
                    )
                )
            time.sleep(PROBE_EVERY)
    finally:
        attacker.stop.set()
        thread.join(timeout=30)
    observe(
        slow_clients=SLOW_CLIENTS,
        slow_connections_opened=attacker.opened,
        dropped_by_server=attacker.dropped,
        answered_408=attacker.answered_408,
        slow_heads_dropped=attacker.heads_dropped,
        healthz_probes=len(health),
        healthz_worst_s=round(max(health), 3),
        pushes=len(delivered),
        push_worst_s=round(max(delivered), 3),
    )
    assert not attacker.errors, attacker.errors
    assert attacker.opened >= SLOW_CLIENTS
    assert max(health) < ANSWER_WITHIN, f"/healthz took {max(health):.2f} s at worst"
    assert max(delivered) < ANSWER_WITHIN, f"a push took {max(delivered):.2f} s at worst"
    assert len(delivered) == 2 * TICKETS_PER_DESK and not pushes
    # Slow clients are not held for ever: bodies get 408 after the body deadline, heads are
    # closed after the keep-alive window.
    assert attacker.answered_408 > 0 and attacker.heads_dropped > 0
    for desk in desks:
        wait_markers(desk, tickets[desk.system], "pending", WAIT)
