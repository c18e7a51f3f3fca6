"""MessagePack-RPC handling of one connection, over an in-memory socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from agent.rpc import Closed, HandlerError, NotConnected, RemoteError, RpcPeer, RpcTimeout
from core.protocol import (
    Request,
    Response,
    decode_frame,
    encode_notification,
    encode_request,
    encode_response,
)


class MemorySocket:
    """Frames the 'master' pushes in; frames the peer sends out."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | str | Close | None] = asyncio.Queue()
        self.sent: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed: Close | None = None

    async def send(self, message: bytes) -> None:
        if self.closed is not None:
            raise ConnectionClosed(self.closed, None)
        await self.sent.put(message)

    async def recv(self) -> str | bytes:
        item = await self.incoming.get()
        if item is None or isinstance(item, Close):
            self.closed = item or Close(1006, "")
            raise ConnectionClosed(item, None)
        return item

    async def next_sent(self) -> Any:
        async with asyncio.timeout(5):
            return decode_frame(await self.sent.get())


@pytest.fixture
async def peer() -> AsyncIterator[tuple[RpcPeer, MemorySocket, asyncio.Task[Closed]]]:
    socket = MemorySocket()
    rpc = RpcPeer(socket)
    task = asyncio.create_task(rpc.serve())
    yield rpc, socket, task
    if not task.done():
        await socket.incoming.put(Close(1000, ""))
        await task


async def test_requests_are_answered_by_handlers(peer: Any) -> None:
    rpc, socket, _ = peer

    async def add(a: int, b: int) -> int:
        return a + b

    rpc.handlers["/math/add"] = add
    await socket.incoming.put(encode_request(7, "/math/add", [2, 3]))
    assert await socket.next_sent() == Response(1, 7, None, 5)


async def test_unknown_method_answers_501(peer: Any) -> None:
    _, socket, _ = peer
    await socket.incoming.put(encode_request(8, "/nope", []))
    reply = await socket.next_sent()
    assert reply == Response(1, 8, {"code": 501, "message": "service not implemented"}, None)


async def test_handler_errors_become_error_replies(peer: Any) -> None:
    rpc, socket, _ = peer

    async def missing(*_: Any) -> None:
        raise HandlerError(404, "container not found")

    async def broken(*_: Any) -> None:
        raise RuntimeError("kaput")

    async def unencodable(*_: Any) -> object:
        return object()

    rpc.handlers.update({"/a": missing, "/b": broken, "/c": unencodable})
    await socket.incoming.put(encode_request(1, "/a", []))
    assert (await socket.next_sent()).error == {"code": 404, "message": "container not found"}
    await socket.incoming.put(encode_request(2, "/b", []))
    assert (await socket.next_sent()).error == {"code": 500, "message": "RuntimeError: kaput"}
    await socket.incoming.put(encode_request(3, "/c", []))
    assert (await socket.next_sent()).error["code"] == 500


async def test_notifications_run_handlers_without_reply(peer: Any) -> None:
    rpc, socket, _ = peer
    seen: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def record(*params: Any) -> None:
        await seen.put(list(params))

    rpc.handlers["/agent/node_info"] = record
    await socket.incoming.put(encode_notification("/agent/unknown", [1]))
    await socket.incoming.put(encode_notification("/agent/node_info", [{"name": "n1"}]))
    async with asyncio.timeout(5):
        assert await seen.get() == [{"name": "n1"}]
    assert socket.sent.empty()


async def test_malformed_and_text_frames_are_ignored(peer: Any) -> None:
    rpc, socket, _ = peer

    async def echo(x: Any) -> Any:
        return x

    rpc.handlers["/echo"] = echo
    await socket.incoming.put(b"\xc1 not msgpack")
    await socket.incoming.put(msgspec.msgpack.encode([9, 1]))
    await socket.incoming.put("text frame")
    await socket.incoming.put(encode_request(4, "/echo", ["still alive"]))
    assert await socket.next_sent() == Response(1, 4, None, "still alive")


async def test_outgoing_requests_are_correlated_by_id(peer: Any) -> None:
    rpc, socket, _ = peer
    first = asyncio.create_task(rpc.request("/nodes/get", ["a"]))
    second = asyncio.create_task(rpc.request("/nodes/get", ["b"]))
    req_a: Request = await socket.next_sent()
    req_b: Request = await socket.next_sent()
    assert (req_a.method, req_a.params, req_b.params) == ("/nodes/get", ["a"], ["b"])
    assert req_a.id != req_b.id
    # Answer out of order.
    await socket.incoming.put(encode_response(req_b.id, None, "B"))
    await socket.incoming.put(encode_response(req_a.id, None, "A"))
    async with asyncio.timeout(5):
        assert (await first, await second) == ("A", "B")


async def test_remote_errors_are_typed(peer: Any) -> None:
    rpc, socket, _ = peer
    call = asyncio.create_task(rpc.request("/nodes/update", []))
    req: Request = await socket.next_sent()
    await socket.incoming.put(
        msgspec.msgpack.encode([1, req.id, {"code": 422, "error": "bad info"}, None])
    )
    with pytest.raises(RemoteError) as caught:
        await call
    assert (caught.value.code, caught.value.message) == (422, "bad info")


async def test_requests_time_out_with_a_typed_error(peer: Any) -> None:
    rpc, socket, _ = peer
    with pytest.raises(RpcTimeout, match=r"/nodes/update: no reply within 0\.05 s"):
        await rpc.request("/nodes/update", [], timeout=0.05)
    # A late reply to the expired request is dropped quietly.
    await socket.incoming.put(encode_response(1, None, "late"))


async def test_pending_requests_fail_when_the_socket_closes(peer: Any) -> None:
    rpc, socket, task = peer
    call = asyncio.create_task(rpc.request("/nodes/update", []))
    await socket.next_sent()
    await socket.incoming.put(Close(4040, "node removed"))
    with pytest.raises(NotConnected):
        await call
    assert await task == Closed(4040, "node removed")
    with pytest.raises(NotConnected):
        await rpc.notify("/nodes/stats", [])


async def test_lost_connection_has_no_close_code(peer: Any) -> None:
    _, socket, task = peer
    await socket.incoming.put(None)
    closed = await task
    assert closed.code is None
