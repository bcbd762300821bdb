"""The demo as a fleet: several daphne processes of one app on free loopback
ports, sharing one database, one Redis channel layer (channels_redis) and
Redis presence, state and rate limits (docs/deployment.md), and live tabs
that record every frame they receive."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import websockets

from tests.demo_server import demo_server
from tests.soak import http_header_lines

TIMEOUT = 60


class Fleet:
    """``processes`` daphne processes of the demo in ``workdir``: the first
    migrates and seeds the SQLite database, the others share it. ``env``:
    the DEMO_* variables of every process (channel layer, Redis...)."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        *,
        processes: int = 2,
        extra_tenants: int = 0,
        tenants: list[str] = (),
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.count = processes
        self.extra_tenants = extra_tenants
        self.tenants = list(tenants)
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen] = []
        self._stack = ExitStack()
        self._logs = 0

    def start(self) -> Fleet:
        try:
            for i in range(self.count):
                self.ports.append(self._run(seed=i == 0))
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, *, seed: bool) -> int:
        started: list[subprocess.Popen] = []
        log_name = f"daphne-{self._logs}.log"
        self._logs += 1
        port = self._stack.enter_context(
            demo_server(
                self.workdir,
                extra_tenants=self.extra_tenants,
                tenants=self.tenants,
                env=self.env,
                started=started,
                seed=seed,
                log_name=log_name,
            )
        )
        self.processes.append(started[0])
        return port

    def kill(self, index: int) -> None:
        """SIGKILL process ``index``: no disconnect, no untrack, no goodbye."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def replace(self, index: int) -> int:
        """A new process in place of (killed) process ``index``: its port."""
        self.ports[index] = self._run(seed=False)
        self.processes[index] = self.processes.pop()
        return self.ports[index]

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("daphne-*.log"))
        )

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


#: A GET: ``(status, header lines (lowercase names, repeats kept), body)``.
http = http_header_lines


async def visitor(port: int, tenant: str) -> str:
    """A browser session of ``tenant``'s board: its ``Cookie`` header (the
    page load names the visitor and saves it in the shared session store)."""
    status, headers, _ = await http(port, f"{tenant}.localhost:{port}", "/board/")
    assert status == 200, status
    cookies = [v.split(";", 1)[0] for k, v in headers if k == "set-cookie"]
    session = [c for c in cookies if c.startswith("sessionid=")]
    assert session, headers
    return "; ".join(cookies)


class Tab:
    """One browser tab of a tenant's board on one process: every frame it
    receives is kept (``frames``), read by a background task."""

    def __init__(
        self, port: int, tenant: str, cookie: str | None = None, heartbeat: float | None = 1.0
    ) -> None:
        """``heartbeat``: seconds between the pings a browser's client sends
        (djust's heartbeat; the presence timeout of the fleet is short)."""
        self.port = port
        self.heartbeat = heartbeat
        self._beating: asyncio.Task[None] | None = None
        self.tenant = tenant
        self.host = f"{tenant}.localhost:{port}"
        self.cookie = cookie
        self.frames: list[dict[str, Any]] = []
        self.mount: dict[str, Any] = {}
        self.closed: int | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.socket: Any = None

    async def open(
        self, view: str = "board.views.BoardView", url: str = "/board/"
    ) -> dict[str, Any]:
        headers = {"Cookie": self.cookie} if self.cookie else None
        self.socket = await websockets.connect(
            f"ws://{self.host}/ws/live/",
            host="127.0.0.1",
            port=self.port,
            origin=f"http://{self.host}",
            additional_headers=headers,
            open_timeout=TIMEOUT,
            max_size=None,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.until(lambda f: f.get("type") == "connect")
        await self.socket.send(json.dumps({"type": "mount", "view": view, "url": url}))
        self.mount = await self.until(lambda f: f.get("type") in ("mount", "error"))
        if self.heartbeat:
            self._beating = asyncio.get_running_loop().create_task(self._beat())
        return self.mount

    async def _beat(self) -> None:
        while self.closed is None:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.socket.send(json.dumps({"type": "ping"}))
            except websockets.exceptions.ConnectionClosed:
                return

    async def _read(self) -> None:
        try:
            async for message in self.socket:
                self.frames.append(json.loads(message))
                self._changed.set()
        except websockets.exceptions.ConnectionClosed as closed:
            self.closed = closed.rcvd.code if closed.rcvd else -1
        else:
            self.closed = self.socket.close_code or 1000
        self._changed.set()

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT, start: int = 0
    ) -> dict[str, Any]:
        """The first frame from index ``start`` on that ``predicate`` accepts
        (waiting for it up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = max(seen, len(self.frames))
            if self.closed is not None:
                raise AssertionError(f"{self.host}: closed ({self.closed}) before the frame")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.host}: no such frame in {self.frames[start:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def showing(self, text: str, timeout: float = TIMEOUT, start: int = 0) -> dict:
        """The first frame (from ``start``) whose JSON contains ``text``."""
        return await self.until(lambda f: text in json.dumps(f), timeout, start)

    def text(self, start: int = 0) -> str:
        return json.dumps(self.frames[start:])

    async def send_event(self, event: str, **params: Any) -> int:
        """Sends an event; returns the index its answer will come after."""
        mark = len(self.frames)
        await self.socket.send(json.dumps({"type": "event", "event": event, "params": params}))
        return mark

    async def ping(self) -> None:
        mark = len(self.frames)
        await self.socket.send(json.dumps({"type": "ping"}))
        await self.until(lambda f: f.get("type") == "pong", start=mark)

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
