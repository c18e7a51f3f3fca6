"""The agent WebSocket at ``/``: handshake, MessagePack-RPC both ways, keepalive (§7).

One :class:`AgentConnection` per socket. Three tasks share it: the reader (answers to our
requests resolve at once; the agent's requests and notifications go to a bounded inbox), the
processor (runs agent messages in order, one transaction each) and the keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from datetime import datetime
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

# Imported for their @agent_method registrations: service pods, containers, container logs,
# node volumes.
from core import container_log_rpc, container_updates, pod_rpc, protocol, volume_rpc  # noqa: F401
from core.node_connection import (
    check_connection,
    load_node_info,
    mark_connected,
    mark_disconnected,
)
from core.node_join import JoinRejected, join_node, read_handshake
from core.node_rpc import NodeOffline, RemoteError, RpcTimeout
from core.node_updates import AgentError, handle_agent_message
from core.protocol import CloseCode
from core.runtime import VERSION, Runtime
from models import Node
from models.base import utcnow

log = logging.getLogger("kontena.agent_ws")

INBOX_SIZE = 1000
# Above this fill level notifications (stats, logs) are dropped; requests still queue.
NOTIFY_DROP_LEVEL = int(INBOX_SIZE * 0.8)
PING_METHOD = "/agent/ping"
# After we send a close frame, how long the peer gets to answer it before we stop reading.
CLOSE_GRACE = 2.0
# Handshakes (join, connected, node_info: ~5 transactions, a grid row lock) run at most this
# many at once per process. After a master restart every agent reconnects at the same moment;
# ungated, 1,000 joins queued on the 20 pooled DB connections, HTTP requests waited behind
# them and checkouts past the pool timeout (30 s) failed. Waiting here holds no connection.
JOIN_CONCURRENCY = 8
_join_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)

REASONS: dict[int, str] = {
    CloseCode.KEEPALIVE_TIMEOUT: "keepalive timeout",
    CloseCode.CONNECTION_RESET: "connection reset",
    CloseCode.NODE_REMOVED: "node removed",
    CloseCode.CONNECTION_CONFLICT: "connection conflict",
}


def _reason(code: int) -> str:
    return REASONS.get(code, "closed")


def _join_gate(loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
    """The handshake semaphore of this event loop (the embedded master's loop, a test's)."""
    gate = _join_gates.get(loop)
    if gate is None:
        gate = _join_gates[loop] = asyncio.Semaphore(JOIN_CONCURRENCY)
    return gate


class AgentConnection:
    """One agent's socket, registered with the node RPC while it is open."""

    def __init__(self, socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
        self.socket = socket
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        self.node_pk = ""
        self.connected_at: datetime | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._send_lock = asyncio.Lock()
        self._last_id = 0
        self._calls: dict[int, asyncio.Future[protocol.Response]] = {}
        self._inbox: asyncio.Queue[protocol.Request | protocol.Notification] = asyncio.Queue(
            INBOX_SIZE
        )
        self._reader: asyncio.Task[None] | None = None

    # Lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Accept, authenticate, serve until the socket closes, then record the disconnect."""
        # Taken before any wait at the gate: the clock-skew check compares it with the agent's.
        now = utcnow()
        await self.socket.accept(
            headers={
                protocol.HEADER_VERSION: VERSION,
                protocol.HEADER_CONNECTED_AT: protocol.format_connected_at(now),
            }
        )
        async with _join_gate(self.loop):
            if not await self._join(now):
                return
            # Registered from here on: whatever happens, _end() unregisters it.
            reader = asyncio.create_task(self._read())
            self._reader = reader
            helpers = [asyncio.create_task(self._process()), asyncio.create_task(self._keepalive())]
            try:
                await self._send_node_info()
            except BaseException:
                await self._end(reader, helpers)
                raise
        try:
            await asyncio.wait([reader])
        finally:
            await self._end(reader, helpers)

    async def _end(self, reader: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        reader.cancel()
        self.runtime.node_rpc.detach(self)
        for task in helpers:
            task.cancel()
        for future in self._calls.values():
            if not future.done():
                future.set_exception(NodeOffline("agent disconnected"))
        await asyncio.shield(self._record_disconnect())

    async def _join(self, now: datetime) -> bool:
        """Authenticate, say hello and register the socket; False when it was closed instead."""
        db = self.runtime.db
        try:
            node = await join_node(db, read_handshake(self.socket.headers), now)
        except JoinRejected as exc:
            log.info("agent rejected: %s %s", exc.code, exc.reason)
            await self.close(exc.code, exc.reason)
            return False
        self.node_pk = node.id
        await self._send(protocol.encode_notification("/agent/master_info", [{"version": VERSION}]))
        connected_at = utcnow()
        if not await mark_connected(db, node.id, self.runtime.node_rpc.holder, connected_at):
            await self.close(CloseCode.CONNECTION_CONFLICT, _reason(CloseCode.CONNECTION_CONFLICT))
            return False
        self.connected_at = connected_at
        self.runtime.node_rpc.attach(self)
        return True

    async def _send_node_info(self) -> None:
        try:
            info = await load_node_info(self.runtime.db, self.node_pk)
            if info is not None:
                await self._send(protocol.encode_notification("/agent/node_info", [info]))
        except Exception:
            # The reader notices a dead socket; a failed query must not kill the connection.
            log.warning("sending node_info to node %s failed", self.node_pk, exc_info=True)

    async def _record_disconnect(self) -> None:
        assert self.connected_at is not None
        try:
            await mark_disconnected(
                self.runtime.db,
                self.node_pk,
                self.connected_at,
                utcnow(),
                self.close_code,
                self.close_reason,
            )
        except Exception:
            log.exception("recording the disconnect of node %s failed", self.node_pk)

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with a Kontena close code (once)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = int(code), reason
        with contextlib.suppress(Exception):
            await self.socket.close(
                code=int(code), reason=reason.encode()[:123].decode(errors="ignore")
            )
        if self._reader is not None:
            # A peer that never answers the close frame must not keep the handler alive.
            self.loop.call_later(CLOSE_GRACE, self._reader.cancel)

    # Incoming ----------------------------------------------------------------------------
    async def _read(self) -> None:
        while True:
            try:
                message = await self.socket.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                if self.close_code is None:
                    self.close_code = int(message.get("code") or 1000)
                    self.close_reason = str(message.get("reason") or "")
                return
            raw: Any = message.get("bytes") or message.get("text") or b""
            data = raw.encode() if isinstance(raw, str) else bytes(raw)
            try:
                frame = protocol.decode_frame(data)
            except protocol.ProtocolError as exc:
                log.warning("node %s sent a bad frame: %s", self.node_pk, exc)
                continue
            if isinstance(frame, protocol.Response):
                future = self._calls.get(frame.id)
                if future is not None and not future.done():
                    future.set_result(frame)
            elif (
                isinstance(frame, protocol.Notification)
                and self._inbox.qsize() >= NOTIFY_DROP_LEVEL
            ):
                log.warning("node %s: inbox full, dropped %s", self.node_pk, frame.method)
            elif isinstance(frame, protocol.Request) and self._inbox.full():
                error = protocol.RpcError(code=503, message="master busy")
                await self._send(protocol.encode_response(frame.id, error, None))
            else:
                self._inbox.put_nowait(frame)

    def _flooded(self) -> bool:
        return self._inbox.qsize() >= NOTIFY_DROP_LEVEL

    async def _process(self) -> None:
        while True:
            frame = await self._inbox.get()
            error: protocol.RpcError | None = None
            result: Any = None
            try:
                result = await self._handle(frame.method, frame.params)
            except AgentError as exc:
                error = protocol.RpcError(code=exc.code, message=exc.message)
            except Exception:
                log.exception("node %s: %s failed", self.node_pk, frame.method)
                error = protocol.RpcError(code=500, message="internal error")
            if isinstance(frame, protocol.Request):
                with contextlib.suppress(Exception):
                    await self._send(protocol.encode_response(frame.id, error, result))

    async def _handle(self, method: str, params: list[Any]) -> Any:
        async with self.runtime.db.session() as session:
            node = await session.get(Node, self.node_pk)
            if node is None:
                await self.close(CloseCode.NODE_REMOVED, _reason(CloseCode.NODE_REMOVED))
                raise AgentError(404, "node removed")
            # Service pod handlers resolve secrets and pull credentials with the API's vault.
            session.info["vault"] = self.runtime.vault
            # Container log batches drop lines already past the retention age.
            session.info["settings"] = self.runtime.settings
            result = await handle_agent_message(session, node, method, params)
            await session.commit()
            return result

    # Keepalive and checks ----------------------------------------------------------------
    async def _keepalive(self) -> None:
        settings = self.runtime.settings
        while True:
            await asyncio.sleep(settings.agent_ping_interval)
            try:
                await self.request(PING_METHOD, [], settings.agent_pong_timeout)
            except RemoteError:
                pass  # an error answer (e.g. 501 unknown method) still proves the agent alive
            except RpcTimeout:
                await self.close(CloseCode.KEEPALIVE_TIMEOUT, _reason(CloseCode.KEEPALIVE_TIMEOUT))
                return
            except NodeOffline:
                return
            if await self._check(touch=True):
                return

    async def recheck(self) -> None:
        """Close at once if the node was removed, reset or taken over (RPC control)."""
        await self._check(touch=False)

    async def _check(self, *, touch: bool) -> bool:
        if self.connected_at is None or self.close_code is not None:
            return True
        code = await check_connection(
            self.runtime.db, self.node_pk, self.connected_at, utcnow() if touch else None
        )
        if code is None:
            return False
        await self.close(code, _reason(code))
        return True

    # Outgoing ----------------------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.socket.send_bytes(data)

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:  # noqa: ASYNC109
        """Send a request to the agent and wait for its response."""
        if self.close_code is not None:
            raise NodeOffline(f"node {self.node_pk} is disconnecting")
        self._last_id = self._last_id % 2_000_000_000 + 1
        msg_id = self._last_id
        future: asyncio.Future[protocol.Response] = self.loop.create_future()
        self._calls[msg_id] = future
        try:
            try:
                await self._send(protocol.encode_request(msg_id, method, params))
            except Exception as exc:
                raise NodeOffline(f"node {self.node_pk}: send failed") from exc
            try:
                response = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RpcTimeout(f"{method} on node {self.node_pk}: no reply") from None
        finally:
            self._calls.pop(msg_id, None)
        if response.error is not None:
            error = response.error
            message = error.get("message") or error.get("error") or ""
            raise RemoteError(int(error.get("code") or 500), str(message))
        return response.result

    async def notify(self, method: str, params: list[Any]) -> None:
        """Send a notification to the agent."""
        if self.close_code is not None:
            raise NodeOffline(f"node {self.node_pk} is disconnecting")
        try:
            await self._send(protocol.encode_notification(method, params))
        except Exception as exc:
            raise NodeOffline(f"node {self.node_pk}: send failed") from exc


@websocket("/", name="agent_socket")
async def agent_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Where agents connect (``ws(s)://master/``)."""
    runtime: Runtime = socket.app.state.runtime
    await AgentConnection(socket, runtime).run()


ROUTES = [agent_socket]
