"""A live-view client for the tests: one browser tab on djust's consumer
behind the test project's ASGI router (tests/app/asgi.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from channels.testing import WebsocketCommunicator
from django.test import AsyncClient


class LiveClient:
    """One browser tab: a WebSocket to djust's consumer, mounted on a view."""

    def __init__(self, host: str, *, origin: str | None = "same", headers=(), cookie: str = ""):
        from tests.app.asgi import application

        self.host = host
        self.ref = 0
        sent = [(b"host", host.encode())]
        if origin == "same":
            origin = f"http://{host}"
        if origin is not None:
            sent.append((b"origin", origin.encode()))
        if cookie:
            sent.append((b"cookie", cookie.encode()))
        sent += [(k.encode(), v.encode()) for k, v in headers]
        self.socket = WebsocketCommunicator(application, "/ws/live/", headers=sent)

    async def connect(self) -> bool:
        connected, _ = await self.socket.connect()
        return connected

    async def mount(self, view: str = "tests.app.views.ItemsView", url: str = "/items/") -> dict:
        assert await self.connect()
        await self.socket.receive_json_from(timeout=5)  # the connect frame
        await self.socket.send_json_to({"type": "mount", "view": view, "url": url})
        return await self.until("mount", "error", "navigate")

    async def until(self, *types: str) -> dict:
        for _ in range(20):
            frame = await self.socket.receive_json_from(timeout=5)
            if frame.get("type") in types:
                return frame
        raise AssertionError(f"no {types} frame")

    async def event(self, event_name: str, **params) -> dict:
        self.ref += 1
        await self.socket.send_json_to(
            {"type": "event", "event": event_name, "params": params, "ref": self.ref}
        )
        return await self.until("patch", "html_update", "noop", "error", "response")

    async def close(self) -> None:
        await self.socket.disconnect()


#: Every :class:`TrackedLiveClient` opened and not yet disconnected.
OPENED: list[LiveClient] = []


class TrackedLiveClient(LiveClient):
    """A :class:`LiveClient` that :func:`disconnect_opened` disconnects after
    the test, so a socket the server closed leaves nothing behind (its
    channel groups, its presence), as a real server's disconnect would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        OPENED.append(self)


async def disconnect_opened() -> None:
    """Disconnect every :class:`TrackedLiveClient` still open (for a test
    module's autouse fixture, after each test)."""
    while OPENED:
        with contextlib.suppress(Exception):
            await OPENED.pop().socket.disconnect()


class Tab(LiveClient):
    """A :class:`LiveClient` that reads every frame, the server's close
    included, without cancelling the app when none comes (asgiref's
    ``receive_output`` does), so a test can wait for what must not arrive."""

    def __init__(self, host: str, **kwargs) -> None:
        super().__init__(host, **kwargs)
        self.frames: list[dict] = []

    async def recv(self, timeout: float = 5) -> dict:
        message = await asyncio.wait_for(self.socket.output_queue.get(), timeout)
        if message["type"] == "websocket.close":
            frame = {"type": "__closed__", "code": message.get("code")}
        elif message.get("text") is not None:
            frame = json.loads(message["text"])
        else:
            frame = {"type": "__bytes__", "bytes": message.get("bytes")}
        self.frames.append(frame)
        return frame

    async def until(self, *types: str) -> dict:
        for _ in range(30):
            frame = await self.recv()
            if frame.get("type") in types or frame["type"] == "__closed__":
                return frame
        raise AssertionError(f"no {types} frame")

    async def mount(self, view: str = "tests.app.views.ItemsView", url: str = "/items/") -> dict:
        assert await self.connect()
        await self.recv()  # the connect frame
        await self.socket.send_json_to({"type": "mount", "view": view, "url": url})
        return await self.until("mount", "error", "navigate")

    async def send(self, frame: dict) -> None:
        await self.socket.send_json_to(frame)

    async def drain(self, timeout: float = 0.3) -> list[dict]:
        """Every frame that arrives until none has for ``timeout`` seconds."""
        got = []
        while True:
            try:
                got.append(await self.recv(timeout))
            except asyncio.TimeoutError:
                return got

    async def closed(self) -> int | None:
        """The close code, reading past other frames (None: not closed)."""
        while True:
            try:
                frame = await self.recv(3)
            except asyncio.TimeoutError:
                return None
            if frame["type"] == "__closed__":
                return frame["code"]


class HostClient(AsyncClient):
    """Django's async client on ``host`` (it always sends ``Host: testserver``)."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def _base_scope(self, **request):
        scope = super()._base_scope(**request)
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        scope["headers"] = [(b"host", self.host.encode()), *headers]
        return scope


class SSETab:
    """One SSE session of ``view`` on ``host``: djust's stream (GET) and
    event (POST) views, with ``cookie`` (a session) and ``origin`` if given."""

    def __init__(self, host: str, view: str, *, origin: str | None = None, cookie: str = ""):
        self.host, self.view, self.origin = host, view, origin
        self.client = HostClient(host)
        if cookie:
            self.client.cookies.load(cookie)
        self.session_id = str(uuid.uuid4())
        self.stream = None

    def _headers(self) -> dict:
        return {"origin": self.origin} if self.origin else {}

    async def open(self) -> dict:
        response = await self.client.get(
            f"/djust/sse/{self.session_id}/", {"view": self.view}, headers=self._headers()
        )
        assert response.status_code == 200, response
        self.stream = aiter(response.streaming_content)
        assert (await self.next())["type"] == "sse_connect"
        return await self.next()

    async def next(self) -> dict:
        while True:
            chunk = await asyncio.wait_for(anext(self.stream), timeout=10)
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if text.startswith("data: "):
                return json.loads(text[len("data: ") :])

    async def post(self, name: str, params: dict | None = None):
        return await self.client.post(
            f"/djust/sse/{self.session_id}/event/",
            data=json.dumps({"event": name, "params": params or {}}),
            content_type="application/json",
            headers=self._headers(),
        )

    async def event(self, name: str) -> dict:
        response = await self.post(name)
        assert response.status_code in (200, 202), (response.status_code, response.content)
        return await self.next()

    async def ended(self) -> bool:
        try:
            await asyncio.wait_for(anext(self.stream), timeout=10)
        except StopAsyncIteration:
            return True
        return False
