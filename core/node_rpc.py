"""Calling a node's agent from anywhere: ``node_rpc.request(node, method, params)``.

An agent's socket lives in one API process (its *holder*). :class:`LocalNodeRpc` reaches the
sockets held by this process, from any thread or event loop of it (the embedded master's
workers run on their own loop); :class:`core.rpc_redis.RedisNodeRpc` adds routing through Redis
to the process recorded in ``Node.connection_holder``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from models import Node

T = TypeVar("T")
NodeRef = Node | str  # a node row, or its database id

DEFAULT_TIMEOUT = 30.0


class NodeRpcError(Exception):
    """Base of every node RPC failure."""


class NodeOffline(NodeRpcError):
    """The node has no open socket to any API process; raised without waiting."""


class RpcTimeout(NodeRpcError):
    """The agent did not answer in time."""


class RemoteError(NodeRpcError):
    """The agent answered with an error ``{code, message}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NodeChannel(Protocol):
    """An open agent socket held by this process (implemented by the API's socket handler)."""

    node_pk: str
    loop: asyncio.AbstractEventLoop

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:  # noqa: ASYNC109
        """Send a request and wait for the agent's answer."""

    async def notify(self, method: str, params: list[Any]) -> None:
        """Send a notification."""

    async def recheck(self) -> None:
        """Re-run the connection checks now (node removed, reset or replaced → close)."""


def new_holder_id() -> str:
    """A name for this process that is unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def node_pk(node: NodeRef) -> str:
    """The database id of a node reference."""
    return node if isinstance(node, str) else node.id


async def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on ``loop``, which may be another thread's loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


class NodeRpc:
    """The interface, and the in-process implementation: sockets held by this process."""

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or new_holder_id()
        self._channels: dict[str, NodeChannel] = {}
        self._lock = threading.Lock()

    # Sockets held here -------------------------------------------------------------------
    def attach(self, channel: NodeChannel) -> None:
        """Register an open socket (replaces an older socket of the same node)."""
        with self._lock:
            self._channels[channel.node_pk] = channel

    def detach(self, channel: NodeChannel) -> None:
        """Forget a socket when it closes (only if it is still the registered one)."""
        with self._lock:
            if self._channels.get(channel.node_pk) is channel:
                del self._channels[channel.node_pk]

    def local(self, pk: str) -> NodeChannel | None:
        """The socket of node ``pk`` if this process holds it."""
        with self._lock:
            return self._channels.get(pk)

    def held(self) -> list[NodeChannel]:
        """Every socket this process holds."""
        with self._lock:
            return list(self._channels.values())

    # The calls ---------------------------------------------------------------------------
    async def request(
        self,
        node: NodeRef,
        method: str,
        params: list[Any],
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the holder process applies it
    ) -> Any:
        """Call ``method`` on the node's agent and return its result."""
        channel = self._require(node)
        return await on_loop(channel.loop, channel.request(method, params, timeout))

    async def notify(self, node: NodeRef, method: str, params: list[Any]) -> None:
        """Send a notification to the node's agent (no answer)."""
        channel = self._require(node)
        await on_loop(channel.loop, channel.notify(method, params))

    async def control(self, node: NodeRef, action: str = "recheck") -> None:
        """Make the process holding the node's socket re-check it now; no-op when none does."""
        if action != "recheck":
            raise ValueError(f"unknown control action {action!r}")
        channel = self.local(node_pk(node))
        if channel is not None:
            await on_loop(channel.loop, channel.recheck())

    async def start(self) -> None:
        """Start background listeners (none for the in-process implementation)."""

    async def stop(self) -> None:
        """Stop background listeners."""

    def _require(self, node: NodeRef) -> NodeChannel:
        channel = self.local(node_pk(node))
        if channel is None:
            raise NodeOffline(f"node {node_pk(node)} is not connected")
        return channel


LocalNodeRpc = NodeRpc

_shared: NodeRpc | None = None
_shared_lock = threading.Lock()


def shared_local() -> NodeRpc:
    """The process-wide in-process RPC the embedded API and its workers share."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = NodeRpc()
        return _shared
