"""Node RPC through Redis and our Redis clients across a restart of a real redis-server.

The agent socket is a stand-in (``EchoChannel``): what is under test is the routing through a
private redis-server this test kills and restarts, not the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.node_rpc import NodeOffline, RpcTimeout
from core.redis_client import async_redis, connection_pool
from core.rpc_redis import RedisNodeRpc
from models import Node
from tests.fixtures.processes import RedisServer


class EchoChannel:
    """An agent socket held by this process that answers every request with its arguments."""

    def __init__(self, node_pk: str) -> None:
        self.node_pk = node_pk
        self.loop = asyncio.get_running_loop()
        self.notes: list[str] = []

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:
        """Echo."""
        return [method, params]

    async def notify(self, method: str, params: list[Any]) -> None:
        """Remember the notification."""
        self.notes.append(method)

    async def recheck(self) -> None:
        """Nothing to check."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone."""
    started = RedisServer(tmp_path)
    started.start()
    yield started
    started.kill()


@pytest.fixture
async def rpcs(server: RedisServer) -> AsyncIterator[tuple[RedisNodeRpc, RedisNodeRpc]]:
    """A holder process's RPC (holding node ``n1``) and a caller's (as in a worker)."""

    def no_database() -> Any:
        raise AssertionError("node rows are passed in, no database needed")

    holder = RedisNodeRpc(server.url, no_database)
    caller = RedisNodeRpc(server.url, no_database)
    await holder.start()
    await caller.start()
    holder.attach(EchoChannel("n1"))
    yield holder, caller
    await caller.stop()
    await holder.stop()


def node(holder: str) -> Node:
    """A connected node row held by ``holder`` (not stored: RPC reads only these fields)."""
    return Node(id="n1", connected=True, connection_holder=holder)


async def test_calls_work_right_after_a_restart(
    server: RedisServer, rpcs: tuple[RedisNodeRpc, RedisNodeRpc]
) -> None:
    """Stale pooled connections reconnect; a holder not yet re-subscribed is waited for."""
    holder, caller = rpcs
    assert await caller.request(node(holder.holder), "/echo", [1]) == ["/echo", [1]]

    # In a thread, so both subscribers notice the dropped connection as they would in life.
    await asyncio.to_thread(server.restart)
    started = time.monotonic()
    assert await caller.request(node(holder.holder), "/echo", [2]) == ["/echo", [2]]
    print(f"\nfirst call after the Redis restart answered in {time.monotonic() - started:.3f} s")
    await caller.notify(node(holder.holder), "/note", [])
    assert await caller.request(node(holder.holder), "/echo", [3]) == ["/echo", [3]]


async def test_a_dead_holder_still_fails_fast(rpcs: tuple[RedisNodeRpc, RedisNodeRpc]) -> None:
    """Without a recent Redis restart, nobody listening means the holder is gone."""
    _, caller = rpcs
    started = time.monotonic()
    with pytest.raises(NodeOffline):
        await caller.request(node("gone:1:dead"), "/echo", [])
    assert time.monotonic() - started < 1.0


async def test_a_call_while_redis_is_down_is_a_timeout_not_a_crash(
    server: RedisServer, rpcs: tuple[RedisNodeRpc, RedisNodeRpc]
) -> None:
    """Callers (the deployer) treat it like a lost reply and carry on."""
    holder, caller = rpcs
    server.kill()
    with pytest.raises(RpcTimeout, match="Redis unreachable"):
        await caller.request(node(holder.holder), "/echo", [])
    with pytest.raises(RpcTimeout, match="Redis unreachable"):
        await caller.notify(node(holder.holder), "/note", [])


async def test_our_clients_survive_a_restart_where_plain_ones_fail(server: RedisServer) -> None:
    """A plain asyncio ``from_url`` client fails its first command after a restart; ours retry."""
    from redis.asyncio import Redis as AsyncRedis

    plain = AsyncRedis.from_url(server.url)
    ours_async = async_redis(server.url)
    ours = redis.Redis(connection_pool=connection_pool(server.url))
    try:
        assert await plain.ping() and await ours_async.ping() and ours.ping()
        await asyncio.to_thread(server.restart)
        with pytest.raises(redis.ConnectionError):
            await plain.ping()
        assert await ours_async.publish("x", b"1") == 0
        assert ours.ping()
    finally:
        await plain.aclose()
        await ours_async.aclose()
        ours.close()
