"""MessagePack-RPC over one WebSocket: dispatch what the master sends, correlate what we ask."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from websockets.exceptions import ConnectionClosed

from core.protocol import (
    Notification,
    ProtocolError,
    Request,
    Response,
    RpcError,
    decode_frame,
    encode_notification,
    encode_request,
    encode_response,
)

log = logging.getLogger(__name__)

# A handler gets the frame's params spread as positional arguments, like the original agent.
Handler = Callable[..., Awaitable[Any]]

NOT_IMPLEMENTED = RpcError(code=501, message="service not implemented")


class Socket(Protocol):
    """The part of a websockets connection the peer uses."""

    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> str | bytes: ...


class RemoteError(Exception):
    """The master answered a request with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcTimeout(TimeoutError):
    """The master sent no reply in time."""


class NotConnected(ConnectionError):
    """The socket closed before the reply arrived."""


class HandlerError(Exception):
    """Raised by a handler to answer with a specific error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Closed:
    """How the socket ended: the close frame the master sent (code None: none arrived)."""

    code: int | None
    reason: str


class RpcPeer:
    """One connection's RPC endpoint; handlers live in ``self.handlers``."""

    def __init__(self, socket: Socket) -> None:
        self._socket = socket
        self.handlers: dict[str, Handler] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # A per-call deadline is this API's contract (the master's RPC client has the same shape).
    async def request(
        self,
        method: str,
        params: list[Any],
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> Any:
        """Send a request and wait for its result; raises RemoteError, RpcTimeout, NotConnected."""
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self._send(encode_request(msg_id, method, params))
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RpcTimeout(f"{method}: no reply within {timeout:g} s") from None
        finally:
            self._pending.pop(msg_id, None)

    async def notify(self, method: str, params: list[Any]) -> None:
        """Send a notification (no reply)."""
        await self._send(encode_notification(method, params))

    async def serve(self) -> Closed:
        """Read frames until the socket closes; returns the close code and reason."""
        try:
            while True:
                data = await self._socket.recv()
                self._dispatch(data)
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return Closed(None, "connection lost without a close frame")
            return Closed(exc.rcvd.code, exc.rcvd.reason)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(NotConnected("connection closed"))
            for task in list(self._tasks):
                task.cancel()

    async def _send(self, data: bytes) -> None:
        try:
            await self._socket.send(data)
        except ConnectionClosed as exc:
            raise NotConnected("connection closed") from exc

    def _dispatch(self, data: str | bytes) -> None:
        if isinstance(data, str):
            log.warning("ignoring a text frame; the protocol uses binary MessagePack frames")
            return
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:
            log.warning("ignoring a malformed frame: %s", exc)
            return
        if isinstance(frame, Response):
            self._resolve(frame)
        elif isinstance(frame, Request):
            self._spawn(self._answer(frame))
        elif isinstance(frame, Notification):
            self._spawn(self._handle_notification(frame))

    def _spawn(self, coro: Awaitable[None]) -> None:
        # Handlers run as tasks so a slow one never blocks the read loop (or pings).
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _resolve(self, frame: Response) -> None:
        future = self._pending.get(frame.id)
        if future is None or future.done():
            log.debug("reply to unknown or expired request %s", frame.id)
            return
        if frame.error is not None:
            error = frame.error
            # The original master put the text under "error" in some replies.
            message = error.get("message") or error.get("error") or "remote error"
            future.set_exception(RemoteError(int(error.get("code", 500)), str(message)))
        else:
            future.set_result(frame.result)

    async def _answer(self, frame: Request) -> None:
        handler = self.handlers.get(frame.method)
        error: RpcError | None = None
        result: Any = None
        if handler is None:
            log.info("request for unknown method %s", frame.method)
            error = NOT_IMPLEMENTED
        else:
            try:
                result = await handler(*frame.params)
            except HandlerError as exc:
                error = RpcError(code=exc.code, message=exc.message)
            except Exception as exc:
                log.exception("handler %s failed", frame.method)
                error = RpcError(code=500, message=f"{type(exc).__name__}: {exc}")
        try:
            data = encode_response(frame.id, error, result)
        except (TypeError, msgspec.EncodeError) as exc:
            data = encode_response(frame.id, RpcError(code=500, message=str(exc)), None)
        try:
            await self._send(data)
        except NotConnected:
            log.debug("connection closed before the reply to %s was sent", frame.method)

    async def _handle_notification(self, frame: Notification) -> None:
        handler = self.handlers.get(frame.method)
        if handler is None:
            log.debug("ignoring notification %s (no handler)", frame.method)
            return
        try:
            await handler(*frame.params)
        except Exception:
            log.exception("notification handler %s failed", frame.method)
