"""Headless Chromium driven over the DevTools protocol on a pipe, for tests of pages we generate:
open a page, collect every console error, exception and refused load, take a full-page
screenshot.

Why the protocol and not ``--screenshot`` with ``--enable-logging=stderr``: stderr mixes the
page's console with the browser's own noise (D-Bus, GPU), its format changes between versions, and
the new headless mode does not promise to echo console messages there. The protocol reports them
as typed events (``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``, ``Log.entryAdded``,
the last one carrying Content-Security-Policy refusals and failed loads). The pipe
(``--remote-debugging-pipe``: commands on fd 3, replies on fd 4, NUL-separated JSON) opens no port.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-pipe",
)  # fmt: skip


def find() -> str | None:
    """The Chromium binary (Debian's ``chromium`` package), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Rendered:
    png: bytes
    errors: list[str] = field(default_factory=list)
    text: str = ""  # the page's text as the browser lays it out (``innerText``)


class _Pipe:
    def __init__(self, binary: str, profile: Path) -> None:
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()

        def onto_3_and_4() -> None:  # Chromium reads fd 3 and writes fd 4
            # Copies above 9 first: either pipe end may itself be fd 3 or 4 (dup2 onto itself
            # would leave it close-on-exec, and one dup2 could overwrite the other's source).
            read, write = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w))
            os.dup2(read, 3)
            os.dup2(write, 4)

        # close_fds=False: the dup2'ed 3 and 4 must survive exec; the pipes' own descriptors are
        # close-on-exec, as Python makes every descriptor by default.
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=onto_3_and_4,  # before any thread of ours starts
        )
        os.close(commands_r)
        os.close(replies_w)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._replies, "rb", buffering=0) as replies:
            while chunk := replies.read(65536):
                buffer += chunk
                *complete, buffer = buffer.split(b"\0")
                for raw in complete:
                    self.messages.put(json.loads(raw))

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._ids, f"the answer to {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait(self, wanted: Any, what: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium: no {what} within {timeout} s")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if "method" in message:
                self.events.append(message)
            if wanted(message):
                return message

    def drain(self, seconds: float) -> None:
        """Keep collecting events for a moment (late console messages)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                return
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the browser may be gone already
            os.write(self._commands, b'{"id": 0, "method": "Browser.close"}\0')
        os.close(self._commands)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for e in events:
        method, params = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            thrown = details.get("exception", {}).get("description") or details.get("text")
            found.append(f"exception: {thrown}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            words = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            found.append(f"console.{params['type']}: {' '.join(words)}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            source, text, url = entry.get("source", "log"), entry.get("text"), entry.get("url", "")
            found.append(f"{source}: {text} {url}")
    return found


def render(binary: str, url: str, profile: Path, width: int = 1280) -> Rendered:
    """Open ``url``, wait for its load event, and return a full-page PNG and its errors."""
    browser = _Pipe(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.send("Page.navigate", {"url": url}, session)
        browser.wait(lambda m: m.get("method") == "Page.loadEventFired", "load event")
        browser.drain(0.5)
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
            },
            session,
        )
        shown = browser.send(
            "Runtime.evaluate",
            {"expression": "document.body.innerText", "returnByValue": True},
            session,
        )
        browser.drain(0.2)
        text = str(shown.get("result", {}).get("value", ""))
        return Rendered(base64.b64decode(shot["data"]), _errors(browser.events), text)
    finally:
        browser.close()
