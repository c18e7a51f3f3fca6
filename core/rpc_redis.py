"""Node RPC across processes through Redis pub/sub.

Every process subscribes to ``kontena:rpc:<holder>`` (calls for sockets it holds), to its own
reply channel ``kontena:rpc:reply:<uuid>`` and to the broadcast ``kontena:rpc:control``. A
caller publishes ``{type, node, msg_id, method, params, timeout, reply_to}`` to the holder the
node row names; PUBLISH counting no subscriber means that process is gone, so the call fails at
once with :class:`NodeOffline` instead of waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from sqlalchemy import select

from core.node_rpc import (
    DEFAULT_TIMEOUT,
    NodeOffline,
    NodeRef,
    NodeRpc,
    RemoteError,
    RpcTimeout,
    node_pk,
    on_loop,
)
from core.redis_client import async_redis
from models import Node
from models.db import Database

log = logging.getLogger(__name__)

PREFIX = "kontena:rpc:"
CONTROL_CHANNEL = PREFIX + "control"
# Extra time the caller waits for the holder's own timeout answer to arrive.
REPLY_MARGIN = 1.0
# How long a holder looked up for a node id is reused by requests (see the module docstring).
HOLDER_CACHE_SECONDS = 30.0
# The holder's answer when it holds no socket for the node: the call never reached an agent.
UNROUTED = "unrouted"
# Within this many seconds of our own subscriber losing Redis (a restart), other processes may
# still be re-subscribing: a call nobody received is published again for up to
# RESUBSCRIBE_WAIT seconds before the node counts as offline.
RECENT_TROUBLE_SECONDS = 10.0
RESUBSCRIBE_WAIT = 3.0
RESUBSCRIBE_POLL = 0.05
# The subscriber's pause after a failed read, doubling up to the cap while Redis is away.
LISTEN_RETRY_MIN = 0.05
LISTEN_RETRY_MAX = 1.0


class Envelope(msgspec.Struct, omit_defaults=True):
    """One pub/sub message: a call, a reply or a control."""

    type: str  # request | notify | control | reply
    msg_id: str = ""
    node: str = ""
    method: str = ""
    params: list[Any] = msgspec.field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    reply_to: str = ""
    action: str = ""
    origin: str = ""
    # Replies: ok | remote | offline | unrouted | timeout, with the result or the remote error.
    status: str = ""
    result: Any = None
    code: int = 0
    message: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


class RedisNodeRpc(NodeRpc):
    """Routes calls to whichever API process holds the node's socket."""

    def __init__(
        self, redis_url: str, database: Callable[[], Database], holder: str | None = None
    ) -> None:
        super().__init__(holder)
        self._url = redis_url
        self._database = database
        self._instance = uuid.uuid4().hex
        self.reply_channel = f"{PREFIX}reply:{self._instance}"
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Envelope]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._start_lock = asyncio.Lock()
        # node pk → (holder, monotonic expiry) for requests by node id.
        self._holders: dict[str, tuple[str, float]] = {}
        self._trouble_at = -RECENT_TROUBLE_SECONDS  # when our subscriber last lost Redis

    @property
    def channel(self) -> str:
        """The channel calls for sockets held here arrive on."""
        return PREFIX + self.holder

    async def start(self) -> None:
        """Connect and subscribe; idempotent (workers start lazily on their first call)."""
        async with self._start_lock:
            if self._listener is not None:
                return
            self._redis = async_redis(self._url)
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pubsub.subscribe(self.channel, self.reply_channel, CONTROL_CHANNEL)
            except RedisError:
                # Redis unreachable: the next call starts again with fresh clients.
                await self._pubsub.aclose()
                await self._redis.aclose()
                self._pubsub = self._redis = None
                raise
            if self._pubsub.connection is not None:
                self._pubsub.connection.register_connect_callback(self._reconnected)
            self._listener = asyncio.create_task(self._listen(self._pubsub))

    async def stop(self) -> None:
        """Unsubscribe and fail calls still waiting."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        for task in list(self._tasks):
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NodeOffline("node RPC stopped"))
        self._pending.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        self._pubsub = self._redis = None

    # Caller side -------------------------------------------------------------------------
    async def request(
        self,
        node: NodeRef,
        method: str,
        params: list[Any],
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the holder process applies it
    ) -> Any:
        """Call ``method`` on the node's agent, wherever its socket is held."""
        pk = node_pk(node)
        channel = self.local(pk)
        if channel is not None:
            return await on_loop(channel.loop, channel.request(method, params, timeout))
        cached = self._cached_holder(node)
        await self.start()
        if cached is not None:
            reply = await self._call(cached, node, method, params, timeout, retry_unrouted=True)
            if reply is not None:
                return _result(reply, method, node)
            self._holders.pop(pk, None)  # it moved or went away: ask the database again
        holder = await self._holder(node)
        reply = await self._call(holder, node, method, params, timeout, retry_unrouted=False)
        assert reply is not None
        return _result(reply, method, node)

    async def _call(
        self,
        holder: str,
        node: NodeRef,
        method: str,
        params: list[Any],
        timeout: float,  # noqa: ASYNC109 - the holder process applies it
        *,
        retry_unrouted: bool,
    ) -> Envelope | None:
        """Send one request to ``holder``; None when it never reached an agent and may retry."""
        msg_id = uuid.uuid4().hex
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            envelope = Envelope(
                type="request",
                msg_id=msg_id,
                node=node_pk(node),
                method=method,
                params=params,
                timeout=timeout,
                reply_to=self.reply_channel,
            )
            try:
                await self._publish(PREFIX + holder, envelope, node)
            except NodeOffline:
                if retry_unrouted:
                    return None  # a cached holder that went away: look it up again
                raise
            try:
                reply = await asyncio.wait_for(future, timeout + REPLY_MARGIN)
            except TimeoutError:
                raise RpcTimeout(f"{method} on node {node_pk(node)}: no reply") from None
        finally:
            self._pending.pop(msg_id, None)
        if reply.status == UNROUTED and retry_unrouted:
            return None
        return reply

    def _cached_holder(self, node: NodeRef) -> str | None:
        if isinstance(node, Node):
            return None  # the caller's row is fresher than anything cached here
        found = self._holders.get(node)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    async def notify(self, node: NodeRef, method: str, params: list[Any]) -> None:
        """Send a notification to the node's agent, wherever its socket is held."""
        channel = self.local(node_pk(node))
        if channel is not None:
            await on_loop(channel.loop, channel.notify(method, params))
            return
        holder = await self._holder(node)
        envelope = Envelope(type="notify", node=node_pk(node), method=method, params=params)
        await self._publish(PREFIX + holder, envelope, node)

    async def control(self, node: NodeRef, action: str = "recheck") -> None:
        """Tell every API process; the one holding the socket re-checks it."""
        await super().control(node, action)
        await self.start()
        assert self._redis is not None
        envelope = Envelope(
            type="control", node=node_pk(node), action=action, origin=self._instance
        )
        await self._redis.publish(CONTROL_CHANNEL, _encoder.encode(envelope))

    async def _holder(self, node: NodeRef) -> str:
        if isinstance(node, Node):
            connected, holder = node.connected, node.connection_holder
        else:
            # One autocommit statement: no BEGIN/ROLLBACK round trips, no ORM session.
            async with self._database().engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (
                    await conn.execute(
                        select(Node.connected, Node.connection_holder).where(Node.id == node)
                    )
                ).first()
            connected, holder = (row.connected, row.connection_holder) if row else (False, None)
        if not connected or not holder:
            self._holders.pop(node_pk(node), None)
            raise NodeOffline(f"node {node_pk(node)} is not connected")
        if not isinstance(node, Node):
            self._holders[node] = (holder, time.monotonic() + HOLDER_CACHE_SECONDS)
        return holder

    async def _publish(self, channel: str, envelope: Envelope, node: NodeRef) -> None:
        try:
            await self.start()
            delivered = await self._deliver(channel, _encoder.encode(envelope))
        except RedisError as exc:
            # Redis is away (restarting) even after the client's retries: like a lost reply,
            # so callers fall back as they do on a timeout (agents also re-list on their own).
            raise RpcTimeout(
                f"{envelope.method} on node {node_pk(node)}: Redis unreachable "
                f"({type(exc).__name__})"
            ) from exc
        if not delivered:
            # The recorded holder is gone (crashed API process): nobody can deliver it.
            raise NodeOffline(f"node {node_pk(node)}: the API process holding it is gone")

    async def _deliver(self, channel: str, data: bytes) -> int:
        """PUBLISH ``data``; returns how many processes received it.

        Nobody receiving it means its holder died (fail fast), unless Redis was lost a moment
        ago: then the holder may not have re-subscribed yet, and we give it a few seconds.
        """
        assert self._redis is not None
        receivers: int = await self._redis.publish(channel, data)
        if not receivers and await self._redis_was_lost():
            deadline = time.monotonic() + RESUBSCRIBE_WAIT
            while not receivers and time.monotonic() < deadline:
                await asyncio.sleep(RESUBSCRIBE_POLL)
                receivers = await self._redis.publish(channel, data)
        return receivers

    async def _redis_was_lost(self) -> bool:
        """True while our own subscription is missing, and for a while after we lost Redis."""
        if time.monotonic() - self._trouble_at < RECENT_TROUBLE_SECONDS:
            return True
        # Asked of the server, so it holds even before our subscriber has seen the restart.
        assert self._redis is not None
        [(_, subscribers)] = await self._redis.pubsub_numsub(self.reply_channel)
        return int(subscribers) == 0

    def _reconnected(self, _connection: Any) -> None:
        # The subscriber's connection came back (maybe inside the client's retries, without an
        # error reaching _listen): Redis was lost a moment ago.
        self._trouble_at = time.monotonic()

    # Holder side -------------------------------------------------------------------------
    async def _listen(self, pubsub: PubSub) -> None:
        pause = LISTEN_RETRY_MIN
        while True:
            try:
                message = await pubsub.get_message(timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py reconnects and re-subscribes on the next read: soon, so calls to
                # sockets held here are not refused after a Redis restart; but do not spin.
                log.warning("node RPC subscriber: %s", type(exc).__name__)
                self._trouble_at = time.monotonic()
                await asyncio.sleep(pause)
                pause = min(pause * 2, LISTEN_RETRY_MAX)
                continue
            pause = LISTEN_RETRY_MIN
            if message is None or message.get("type") != "message":
                continue
            try:
                envelope = _decoder.decode(message["data"])
            except msgspec.DecodeError:
                log.warning("node RPC: undecodable message ignored")
                continue
            self._dispatch(envelope)

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.type == "reply":
            future = self._pending.get(envelope.msg_id)
            if future is not None and not future.done():
                future.set_result(envelope)
            return
        if envelope.type == "control" and envelope.origin == self._instance:
            return  # already done locally by control()
        if envelope.type in ("request", "notify", "control"):
            task = asyncio.create_task(self._serve(envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, envelope: Envelope) -> None:
        channel = self.local(envelope.node)
        try:
            if envelope.type == "control":
                if channel is not None:
                    await on_loop(channel.loop, channel.recheck())
            elif envelope.type == "notify":
                if channel is not None:
                    await on_loop(channel.loop, channel.notify(envelope.method, envelope.params))
            else:
                await self._answer(envelope, channel)
        except Exception:
            log.exception("node RPC %s %s failed", envelope.type, envelope.method)

    async def _answer(self, envelope: Envelope, channel: Any) -> None:
        reply = Envelope(type="reply", msg_id=envelope.msg_id)
        if channel is None:
            # Not held here (any more): the caller may look the holder up again and retry.
            reply.status = UNROUTED
        else:
            try:
                reply.result = await on_loop(
                    channel.loop,
                    channel.request(envelope.method, envelope.params, envelope.timeout),
                )
                reply.status = "ok"
            except RemoteError as exc:
                reply.status, reply.code, reply.message = "remote", exc.code, exc.message
            except RpcTimeout:
                reply.status = "timeout"
            except NodeOffline:
                reply.status = "offline"
        await self._deliver(envelope.reply_to, _encoder.encode(reply))


def _result(reply: Envelope, method: str, node: NodeRef) -> Any:
    if reply.status == "ok":
        return reply.result
    if reply.status == "remote":
        raise RemoteError(reply.code, reply.message)
    if reply.status == "timeout":
        raise RpcTimeout(f"{method} on node {node_pk(node)}: no reply")
    # offline, unrouted (nobody holds its socket) or a status of a newer process
    raise NodeOffline(f"node {node_pk(node)} is not connected")
