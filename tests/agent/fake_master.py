"""A tiny real WebSocket server on 127.0.0.1 that plays the master for agent tests.

It speaks the real framing (core.protocol) over a real socket; it has none of the master's
rules, so each test scripts what the master says and checks what the agent sends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from core.protocol import (
    Frame,
    Request,
    Response,
    decode_frame,
    encode_notification,
    encode_request,
    encode_response,
)

DEADLINE = 10.0


class MasterConnection:
    """One agent connection as the fake master sees it."""

    def __init__(self, socket: ServerConnection, replies: dict[str, Any]) -> None:
        self.socket = socket
        assert socket.request is not None
        self.headers: Headers = socket.request.headers
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.replies = replies
        self.close_code: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1000)

    async def serve(self) -> None:
        """Read until the agent goes away; auto-answer the agent's requests."""
        try:
            async for data in self.socket:
                assert isinstance(data, bytes), "the agent must send binary frames"
                frame = decode_frame(data)
                if isinstance(frame, Request) and frame.method in self.replies:
                    reply = self.replies[frame.method]
                    # A callable reply computes the result from the request's params.
                    result = reply(frame.params) if callable(reply) else reply
                    await self.socket.send(encode_response(frame.id, None, result))
                await self.frames.put(frame)
        except ConnectionClosed:
            pass
        rcvd = self.socket.protocol.close_rcvd
        if not self.close_code.done():
            self.close_code.set_result(None if rcvd is None else rcvd.code)

    async def notify(self, method: str, params: list[Any]) -> None:
        """Send a notification to the agent."""
        await self.socket.send(encode_notification(method, params))

    async def send_request(self, method: str, params: list[Any]) -> int:
        """Send a request; returns its id (the response arrives in ``frames``)."""
        msg_id = next(self._ids)
        await self.socket.send(encode_request(msg_id, method, params))
        return msg_id

    async def next_frame(
        self, kind: type[Frame], method: str | None = None, timeout: float = DEADLINE
    ) -> Any:
        """The next frame of ``kind`` (and ``method``) the agent sent, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if not isinstance(frame, kind):
                    continue
                if method is None or getattr(frame, "method", None) == method:
                    return frame

    async def response_to(self, msg_id: int, timeout: float = DEADLINE) -> Response:
        """The agent's response to request ``msg_id``."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next_frame(Response)
                if frame.id == msg_id:
                    return frame  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str = "") -> None:
        """Close from the master side with a Kontena close code."""
        await self.socket.close(code, reason)


class FakeMaster:
    """Accepts agent connections on a free loopback port."""

    def __init__(self, replies: dict[str, Any] | None = None) -> None:
        self.replies = {"/nodes/update": {}} if replies is None else replies
        self.connections: asyncio.Queue[MasterConnection] = asyncio.Queue()
        self.server: Server | None = None

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def _handler(self, socket: ServerConnection) -> None:
        conn = MasterConnection(socket, self.replies)
        await self.connections.put(conn)
        await conn.serve()

    async def accept(self, timeout: float = DEADLINE) -> MasterConnection:
        """The next agent connection."""
        async with asyncio.timeout(timeout):
            return await self.connections.get()


@asynccontextmanager
async def fake_master(replies: dict[str, Any] | None = None) -> AsyncIterator[FakeMaster]:
    """Run a FakeMaster for the block."""
    master = FakeMaster(replies)
    async with serve(master._handler, "127.0.0.1", 0, ping_interval=None) as server:
        master.server = server
        yield master


class PodBook:
    """The master's side of service pods: the list it serves and the states the agent reports.

    Use ``fake_master(book.replies())``; change ``book.pods`` and nudge the agent with
    ``/service_pods/notify_update``.
    """

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.health: list[dict[str, Any]] = []  # /node_service_pods/set_health params[1]
        self.oneshot_marks: list[list[Any]] = []  # /node_service_pods/mark_oneshot_hook params
        self.list_calls = 0
        self._changed = asyncio.Event()

    def replies(self) -> dict[str, Any]:
        """Auto-answers for /nodes/update and the /node_service_pods/* requests."""
        return {
            "/nodes/update": {},
            "/node_service_pods/list": self._list,
            "/node_service_pods/set_state": self._set_state,
            "/node_service_pods/set_health": self._set_health,
            "/node_service_pods/mark_oneshot_hook": self._mark_oneshot,
        }

    def _set_health(self, params: list[Any]) -> dict[str, Any]:
        self.health.append(params[1])
        self._changed.set()
        return {}

    def _mark_oneshot(self, params: list[Any]) -> dict[str, Any]:
        self.oneshot_marks.append(params)
        return {}

    async def wait_health(self, timeout: float = DEADLINE, **expected: Any) -> dict[str, Any]:
        """The first reported health whose items include ``expected`` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for report in self.health:
                    if all(report.get(k) == v for k, v in expected.items()):
                        return report
                self._changed.clear()
                await self._changed.wait()

    def _list(self, params: list[Any]) -> dict[str, Any]:
        self.list_calls += 1
        return {"service_pods": list(self.pods)}

    def _set_state(self, params: list[Any]) -> dict[str, Any]:
        self.states.append(params[1])
        self._changed.set()
        return {}

    async def wait_state(self, timeout: float = DEADLINE, **expected: Any) -> dict[str, Any]:
        """The first reported state whose items include ``expected`` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for state in self.states:
                    if all(state.get(k) == v for k, v in expected.items()):
                        return state
                self._changed.clear()
                await self._changed.wait()
