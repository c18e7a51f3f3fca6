"""Node RPC across processes: two real API processes, a fake agent on one, a caller elsewhere."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from core.config import Settings
from core.node_rpc import NodeOffline, RemoteError, RpcTimeout
from core.rpc_redis import RedisNodeRpc
from core.tokens import digest, new_grid_token
from models import Grid, Node
from models.db import Database
from tests.fixtures.fake_agent import agent_headers, fake_agent
from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow


@asynccontextmanager
async def api_processes(settings: Settings, count: int) -> AsyncIterator[list[str]]:
    """``kontena-master api`` as real processes on free ports; yields their base URLs."""
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for _ in range(count):
            port = free_port()
            env = {
                **os.environ,
                "KONTENA_DATABASE_URL": settings.resolved_database_url,
                "KONTENA_REDIS_URL": settings.redis_url,
                "KONTENA_VAULT_KEY": settings.vault_key,
                "KONTENA_HOST": "127.0.0.1",
                "KONTENA_PORT": str(port),
                "KONTENA_LOG_LEVEL": "warning",
            }
            proc = subprocess.Popen([sys.executable, "-m", "api.cli", "api"], env=env)
            procs.append((proc, f"http://127.0.0.1:{port}"))
        # Started together, waited for together: each takes seconds to import on a busy host.
        await asyncio.gather(*(_wait_ready(proc, url) for proc, url in procs))
        yield [url for _, url in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the API process exited"
            try:
                if (await http.get("/v1/ping")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, "the API process did not start"
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def two_apis(settings: Settings, db: Database) -> AsyncIterator[tuple[str, str]]:
    """Two API processes sharing the database and Redis (stateless: shared by the module)."""
    async with api_processes(settings, 2) as (a, b):
        yield a, b


@pytest.fixture
async def caller(settings: Settings, db: Database) -> AsyncIterator[RedisNodeRpc]:
    """A node RPC client in the test process, as a worker builds it."""
    rpc = RedisNodeRpc(settings.redis_url, lambda: db)
    yield rpc
    await rpc.stop()


async def grid_token(db: Database) -> str:
    """A grid ``main``; returns its join token."""
    token = new_grid_token()
    async with db.session() as session:
        session.add(Grid(name="main", token_hash=digest(token), token_encrypted="x"))
        await session.commit()
    return token


async def node_row(db: Database, node_id: str = "AAAA:1111") -> Node:
    """The node row of agent ``node_id``."""
    async with db.session() as session:
        return (await session.execute(select(Node).where(Node.node_id == node_id))).scalar_one()


async def eventually_offline(db: Database, deadline: float = 5.0) -> None:
    """Wait until the node row says disconnected."""
    end = time.monotonic() + deadline
    while (await node_row(db)).connected:
        assert time.monotonic() < end, "node still connected"
        await asyncio.sleep(0.05)


async def test_rpc_reaches_an_agent_held_by_another_process(
    two_apis: tuple[str, str], caller: RedisNodeRpc, db: Database
) -> None:
    url_a, url_b = two_apis
    token = await grid_token(db)
    async with fake_agent(url_a, agent_headers("AAAA:1111", grid_token=token)) as agent:
        await agent.joined()

        async def echo(params: list[Any]) -> Any:
            return {"echo": params}

        async def hang(params: list[Any]) -> Any:
            await asyncio.sleep(30)

        agent.handlers.update({"/test/echo": echo, "/test/hang": hang})
        node = await node_row(db)
        assert node.connected and node.connection_holder not in (None, caller.holder)

        assert await caller.request(node.id, "/test/echo", [1, "two", {"3": 4}]) == {
            "echo": [1, "two", {"3": 4}]
        }
        timings = []
        for _ in range(50):
            started = time.monotonic()
            assert await caller.request(node, "/agent/ping", []) == "pong"
            timings.append(time.monotonic() - started)
        timings.sort()
        p50, p99 = timings[len(timings) // 2], timings[int(len(timings) * 0.99)]
        print(f"\ncross-process RPC round trip: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        assert p50 < 0.1, timings

        with pytest.raises(RemoteError) as remote:
            await caller.request(node.id, "/no/such/method", [])
        assert (remote.value.code, remote.value.message) == (501, "service not implemented")

        started = time.monotonic()
        with pytest.raises(RpcTimeout):
            await caller.request(node.id, "/test/hang", [], timeout=0.5)
        assert time.monotonic() - started < 2.0

        await caller.notify(node.id, "/test/note", ["hello"])
        assert await agent.notification("/test/note") == ["hello"]

        # A second node on process B: each call goes to the process holding that node.
        other = agent_headers("BBBB:2222", name="other", grid_token=token)
        async with fake_agent(url_b, other) as agent_b:
            await agent_b.joined()
            async with db.session() as session:
                node_b = (
                    await session.execute(select(Node).where(Node.node_id == "BBBB:2222"))
                ).scalar_one()
            assert node_b.connection_holder not in (node.connection_holder, caller.holder)
            results = await asyncio.gather(
                caller.request(node.id, "/agent/ping", []),
                caller.request(node_b.id, "/agent/ping", []),
            )
            assert results == ["pong", "pong"]
            assert [r.method for r in agent_b.requests] == ["/agent/ping"]

    await eventually_offline(db)
    started = time.monotonic()
    with pytest.raises(NodeOffline):
        await caller.request(node.id, "/test/echo", [])
    assert time.monotonic() - started < 1.0


async def test_a_dead_holder_fails_fast_and_control_closes_the_socket(
    two_apis: tuple[str, str], caller: RedisNodeRpc, db: Database
) -> None:
    _, url_b = two_apis
    token = await grid_token(db)
    async with fake_agent(url_b, agent_headers("AAAA:1111", grid_token=token)) as agent:
        await agent.joined()
        node = await node_row(db)
        real_holder = node.connection_holder

        # The row names a process that no longer exists (it crashed holding the socket).
        async with db.session() as session:
            await session.execute(update(Node).values(connection_holder="gone:1:dead"))
            await session.commit()
        started = time.monotonic()
        with pytest.raises(NodeOffline):
            await caller.request(node.id, "/agent/ping", [])
        assert time.monotonic() - started < 1.0

        # A reset through the API's path: row first, then control from another process.
        async with db.session() as session:
            await session.execute(
                update(Node).values(connection_holder=real_holder, connected=False)
            )
            await session.commit()
        started = time.monotonic()
        await caller.control(node.id)
        assert await agent.close_code(3.0) == (4031, "connection reset")
        assert time.monotonic() - started < 1.0


async def test_a_request_by_id_follows_the_node_to_another_process(
    two_apis: tuple[str, str], caller: RedisNodeRpc, db: Database
) -> None:
    """The caller reuses the holder it looked up; when the node moved, it looks again."""
    url_a, url_b = two_apis
    token = await grid_token(db)
    async with fake_agent(url_a, agent_headers("AAAA:1111", grid_token=token)) as agent:
        await agent.joined()
        node = await node_row(db)
        assert await caller.request(node.id, "/agent/ping", []) == "pong"  # holder A cached
    await eventually_offline(db)
    async with fake_agent(url_b, agent_headers("AAAA:1111", grid_token=token)) as agent_b:
        await agent_b.joined()
        moved = await node_row(db)
        assert moved.connected and moved.connection_holder != node.connection_holder
        # A answers `unrouted` (it never saw an agent for this call); the caller asks again.
        assert await caller.request(node.id, "/agent/ping", []) == "pong"
    await eventually_offline(db)
    started = time.monotonic()
    with pytest.raises(NodeOffline):
        await caller.request(node.id, "/agent/ping", [])  # holder B cached, node gone
    assert time.monotonic() - started < 1.0
