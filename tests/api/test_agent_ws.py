"""The agent WebSocket: handshake close codes, joins, agent reports, keepalive, control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import delete, func, select, update

from api.app import create_app
from core.config import Settings
from core.jobs import Job
from core.node_rpc import NodeRpc
from core.node_status import node_status
from core.rate_limit import MemoryRateLimiter
from core.runtime import Runtime
from core.tokens import digest, new_grid_token
from core.vault import Vault
from models import EventLog, Grid, Node, NodeStat
from models.db import Database
from tests.fixtures.fake_agent import agent_headers, fake_agent, rejected_with
from tests.fixtures.server import serve


class NoJobs:
    """The socket sends no jobs; a sender that refuses keeps that honest."""

    def send(self, job: Job) -> None:
        raise AssertionError(f"unexpected job {job}")


@dataclass
class Master:
    """A served app with its runtime."""

    url: str
    runtime: Runtime


@asynccontextmanager
async def master(
    settings: Settings, db: Database, vault: Vault, **overrides: Any
) -> AsyncIterator[Master]:
    """Serve the API with settings overridden (keepalive timings)."""
    tuned = msgspec.structs.replace(settings, **overrides)
    runtime = Runtime(
        settings=tuned,
        db=db,
        vault=vault,
        sender=NoJobs(),
        rate_limiter=MemoryRateLimiter(60, 60),
        node_rpc=NodeRpc(),
    )
    async with serve(create_app(runtime)) as url:
        yield Master(url, runtime)


@pytest.fixture
async def server(settings: Settings, db: Database, vault: Vault) -> AsyncIterator[Master]:
    """The API with a long keepalive interval (no pings during a test)."""
    async with master(settings, db, vault, agent_ping_interval=60.0) as m:
        yield m


async def make_grid(db: Database, name: str = "main", initial_size: int = 1) -> str:
    """A grid row; returns its plain join token."""
    token = new_grid_token()
    async with db.session() as session:
        session.add(
            Grid(
                name=name, token_hash=digest(token), token_encrypted="x", initial_size=initial_size
            )
        )
        await session.commit()
    return token


async def make_node(db: Database, grid: str = "main", **values: Any) -> Node:
    """A node row in ``grid`` (node_number 1 and name ``host`` unless given)."""
    async with db.session() as session:
        grid_id = (await session.execute(select(Grid.id).where(Grid.name == grid))).scalar_one()
        node = Node(grid_id=grid_id, **{"name": "host", "node_number": 1, **values})
        session.add(node)
        await session.commit()
        return node


async def nodes(db: Database) -> list[Node]:
    """Every node row, by node number."""
    async with db.session() as session:
        return list((await session.execute(select(Node).order_by(Node.node_number))).scalars())


async def event_types(db: Database) -> list[str]:
    """Event log types, oldest first."""
    async with db.session() as session:
        return list((await session.execute(select(EventLog.type).order_by(EventLog.id))).scalars())


async def until(check: Callable[[], Awaitable[bool]], deadline: float = 5.0) -> None:
    """Poll ``check`` until it is true or the deadline passes."""
    end = time.monotonic() + deadline
    while not await check():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_handshake_errors_close_with_kontena_codes(server: Master, db: Database) -> None:
    grid_token = await make_grid(db)
    await make_node(db, token_hash=digest("node-token-0123456789"))
    now = datetime.now(UTC)
    cases = [
        (agent_headers("", grid_token=grid_token), 4000, "Missing Kontena-Node-ID"),
        (agent_headers(), 4004, "Missing token"),
        (agent_headers(grid_token="wrong"), 4001, "Invalid grid token"),
        (agent_headers(node_token="wrong"), 4002, "Invalid node token"),
        (agent_headers(grid_token=grid_token, version="1.4.0"), 4010, None),
        (agent_headers(grid_token=grid_token, version=""), 4010, None),
        (
            agent_headers(grid_token=grid_token, connected_at=now - timedelta(seconds=60)),
            4020,
            None,
        ),
        (
            agent_headers(grid_token=grid_token, connected_at=now + timedelta(seconds=30)),
            4020,
            None,
        ),
    ]
    for headers, code, reason in cases:
        got_code, got_reason = await rejected_with(server.url, headers)
        assert got_code == code, (headers, got_code, got_reason)
        if reason is not None:
            assert got_reason == reason
    # No rejected agent left a node behind.
    assert [n.name for n in await nodes(db)] == ["host"]
    version = await rejected_with(server.url, agent_headers(grid_token=grid_token, version="2.0.1"))
    assert version == (4010, "agent version 2.0.1 is not compatible with server version 1.5.2")


async def test_grid_token_join_creates_the_node_and_reports_it(
    server: Master, db: Database
) -> None:
    grid_token = await make_grid(db, initial_size=1)
    headers = agent_headers(
        "AAAA:1111", name="host", grid_token=grid_token, labels="region=eu,az=a"
    )
    async with fake_agent(server.url, headers) as agent:
        assert await agent.notification("/agent/master_info") == [{"version": "1.5.2"}]
        [info] = await agent.notification("/agent/node_info")
        assert {k: info[k] for k in ("id", "name", "labels", "node_number")} == {
            "id": "AAAA:1111",
            "name": "host",
            "labels": ["region=eu", "az=a"],
            "node_number": 1,
        }
        assert (info["initial_member"], info["overlay_ip"], info["peer_ips"]) == (
            True,
            "10.81.0.1",
            [],
        )
        assert info["grid"] == {
            "id": "main",
            "name": "main",
            "initial_size": 1,
            "trusted_subnets": [],
            "subnet": "10.81.0.0/16",
            "supernet": "10.80.0.0/12",
            "stats": {},
            "logs": None,
        }
        [row] = await nodes(db)
        assert (row.connected, row.updated, node_status(row)) == (True, False, "connecting")
        assert row.connection_holder == server.runtime.node_rpc.holder
        assert row.websocket_connection == {"opened": True}
        assert row.connected_at is not None and row.last_seen_at == row.connected_at

        # Same name, another engine: the next free number, and the name gets it as suffix.
        other = agent_headers("AAAA:2222", name="host", grid_token=grid_token)
        async with fake_agent(server.url, other) as second:
            await second.notification("/agent/master_info")
            [info2] = await second.notification("/agent/node_info")
            assert (info2["name"], info2["node_number"], info2["initial_member"]) == (
                "host-2",
                2,
                False,
            )
        assert [(n.name, n.node_number) for n in await nodes(db)] == [("host", 1), ("host-2", 2)]

    async def offline() -> bool:
        return not (await nodes(db))[0].connected

    await until(offline)
    first = (await nodes(db))[0]
    assert node_status(first) == "offline" and first.disconnected_at is not None
    assert first.websocket_connection == {"opened": False, "close_code": 1000, "close_reason": ""}
    types = await event_types(db)
    assert types.count("node:create") == 2 and types.count("node:connect") == 2
    assert types.count("node:disconnect") == 2


async def test_reconnect_reuses_the_node_and_frees_numbers_are_reused(
    server: Master, db: Database
) -> None:
    grid_token = await make_grid(db)
    await make_node(db, name="old", node_number=2, node_id="OLD")
    headers = agent_headers("AAAA:1111", name="host", grid_token=grid_token)
    for _ in range(2):
        async with fake_agent(server.url, headers) as agent:
            await agent.joined()
    assert [(n.name, n.node_number) for n in await nodes(db)] == [("host", 1), ("old", 2)]


async def test_nodes_update_and_stats_fill_the_node(server: Master, db: Database) -> None:
    grid_token = await make_grid(db)
    headers = agent_headers("AAAA:1111", grid_token=grid_token)
    info = {
        "Name": "host",
        "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "DockerRootDir": "/var/lib/docker",
        "Driver": "overlay2",
        "KernelVersion": "6.1.0-18-amd64",
        "MemTotal": 8_000_000_000,
        "MemoryLimit": True,
        "NCPU": 4,
        "ServerVersion": "24.0.7",
        "PublicIp": "203.0.113.5",
        "PrivateIp": "10.0.0.5",
        "AgentVersion": "1.5.2",
        "Drivers": {
            "Volume": [{"name": "local", "version": None}],
            "Network": [{"name": "bridge"}, "host"],
        },
    }
    stats = {
        "memory": {"total": 8_000_000_000, "used": 2_000_000_000},
        "load": {"1m": 0.5, "5m": 0.4, "15m": 0.3},
        "filesystem": [{"name": "/var/lib/docker", "total": 100, "used": 40}],
        "usage": {"container_seconds": 60},
        "cpu": {"num_cores": 4, "system": 1.5, "user": 10.0, "idle": 88.5},
        "network": {"internal": {"rx_bytes": 1, "tx_bytes": 2}},
        "time": "2024-05-01T12:00:00Z",
    }
    async with fake_agent(server.url, headers) as agent:
        await agent.joined()
        assert await agent.request("/nodes/update", ["AAAA:1111", info]) == {}
        [row] = await nodes(db)
        assert node_status(row) == "online" and row.updated
        assert (row.os, row.engine_root_dir, row.driver, row.kernel_version) == (
            "Debian GNU/Linux 12 (bookworm)",
            "/var/lib/docker",
            "overlay2",
            "6.1.0-18-amd64",
        )
        assert (row.mem_total, row.mem_limit, row.cpus) == (8_000_000_000, None, 4)
        assert (row.docker_version, row.agent_version) == ("24.0.7", "1.5.2")
        assert (row.public_ip, row.private_ip) == ("203.0.113.5", "10.0.0.5")
        assert row.volume_drivers == [{"name": "local", "version": None}]
        assert row.network_drivers == [
            {"name": "bridge", "version": None},
            {"name": "host", "version": None},
        ]

        await agent.notify("/nodes/stats", ["AAAA:1111", stats])

        async def stored() -> bool:
            async with db.session() as session:
                return bool(await session.scalar(select(func.count()).select_from(NodeStat)))

        await until(stored)
        async with db.session() as session:
            stat = (await session.execute(select(NodeStat))).scalar_one()
        assert (stat.node_id, stat.grid_id) == (row.id, row.grid_id)
        assert (stat.memory, stat.load, stat.cpu) == (stats["memory"], stats["load"], stats["cpu"])
        assert (stat.filesystem, stat.usage, stat.network) == (
            stats["filesystem"],
            stats["usage"],
            stats["network"],
        )
        [row] = await nodes(db)
        assert row.latest_stats == stats

        with pytest.raises(AssertionError) as unknown:
            await agent.request("/no/such/method", [])
        assert unknown.value.args[0] == {"code": 501, "message": "service not implemented"}
        with pytest.raises(AssertionError) as bad:
            await agent.request("/nodes/update", ["AAAA:1111"])
        assert bad.value.args[0]["code"] == 400


async def test_node_token_join_binds_the_node(server: Master, db: Database) -> None:
    await make_grid(db)
    await make_node(db, token_hash=digest("node-token-0123456789"), labels=["region=eu"])
    headers = agent_headers(
        "AAAA:1111", node_token="node-token-0123456789", labels="az=b,region=eu"
    )
    async with fake_agent(server.url, headers) as agent:
        info = await agent.joined()
        assert (info["id"], info["name"], info["labels"]) == (
            "AAAA:1111",
            "host",
            ["region=eu", "az=b"],
        )
        [row] = await nodes(db)
        assert (row.node_id, row.connected) == ("AAAA:1111", True)
        # The token is bound to this node id now: another agent with it is refused.
        stolen = agent_headers("ZZZZ:9999", node_token="node-token-0123456789")
        assert (await rejected_with(server.url, stolen))[0] == 4003


async def test_token_kind_and_node_id_conflicts(server: Master, db: Database) -> None:
    grid_token = await make_grid(db)
    await make_node(
        db, name="tokened", node_number=1, node_id="TOKENED", token_hash=digest("t1" * 10)
    )
    await make_node(db, name="unbound", node_number=2, token_hash=digest("t2" * 10))
    await make_node(db, name="plain", node_number=3, node_id="PLAIN")
    # A node created with a node token must keep using it.
    assert (await rejected_with(server.url, agent_headers("TOKENED", grid_token=grid_token)))[
        0
    ] == 4005
    # A node token cannot claim a node id another node already has.
    assert (await rejected_with(server.url, agent_headers("PLAIN", node_token="t2" * 10)))[
        0
    ] == 4006
    assert {n.name: n.node_id for n in await nodes(db)}["unbound"] is None


async def test_clock_skew_is_recorded_on_a_known_node(server: Master, db: Database) -> None:
    grid_token = await make_grid(db)
    await make_node(db, node_id="AAAA:1111")
    late = datetime.now(UTC) - timedelta(seconds=30)
    headers = agent_headers("AAAA:1111", grid_token=grid_token, connected_at=late)
    code, reason = await rejected_with(server.url, headers)
    assert code == 4020
    [row] = await nodes(db)
    assert row.websocket_connection == {"opened": False, "close_code": 4020, "close_reason": reason}
    assert not row.connected


async def test_agent_without_keepalive_answers_is_closed_4030(
    settings: Settings, db: Database, vault: Vault
) -> None:
    grid_token = await make_grid(db)
    async with master(settings, db, vault, agent_ping_interval=0.2, agent_pong_timeout=0.2) as m:
        alive_headers = agent_headers("ALIVE", name="alive", grid_token=grid_token)
        mute_headers = agent_headers("MUTE", name="mute", grid_token=grid_token)
        async with (
            fake_agent(m.url, alive_headers) as alive,
            fake_agent(m.url, mute_headers, mute=True) as mute,
        ):
            assert (await mute.close_code(5.0))[0] == 4030
            assert mute.requests[0].method == "/agent/ping"

            async def recorded() -> bool:
                row = {n.name: n for n in await nodes(db)}["mute"]
                return row.websocket_connection.get("close_code") == 4030

            await until(recorded)
            # The answering agent stays, and each pong moves last_seen_at forward.
            assert not alive.closed.done()

            async def seen_again() -> bool:
                row = {n.name: n for n in await nodes(db)}["alive"]
                assert row.connected and row.last_seen_at and row.connected_at
                return row.last_seen_at > row.connected_at

            await until(seen_again)
    assert not {n.name: n for n in await nodes(db)}["mute"].connected


async def test_a_newer_connection_replaces_the_older_4041(
    settings: Settings, db: Database, vault: Vault
) -> None:
    grid_token = await make_grid(db)
    headers = agent_headers("AAAA:1111", grid_token=grid_token)
    async with (
        master(settings, db, vault, agent_ping_interval=0.2) as m,
        fake_agent(m.url, headers) as old,
    ):
        await old.joined()
        async with fake_agent(m.url, headers) as new:
            await new.joined()
            assert await old.close_code(5.0) == (4041, "connection conflict")
            # The old socket's end must not mark the node disconnected.
            await asyncio.sleep(0.3)
            [row] = await nodes(db)
            assert row.connected and row.websocket_connection == {"opened": True}
            assert not new.closed.done()


async def test_reset_and_removal_close_the_socket_promptly(server: Master, db: Database) -> None:
    grid_token = await make_grid(db)
    headers = agent_headers("AAAA:1111", grid_token=grid_token)
    rpc = server.runtime.node_rpc
    async with fake_agent(server.url, headers) as agent:
        await agent.joined()
        [row] = await nodes(db)
        await rpc.control(row.id)  # nothing changed: the socket stays
        async with db.session() as session:
            await session.execute(update(Node).values(connected=False))
            await session.commit()
        started = time.monotonic()
        await rpc.control(row.id)
        assert await agent.close_code(2.0) == (4031, "connection reset")
        assert time.monotonic() - started < 1.0

    async with fake_agent(server.url, headers) as agent:
        await agent.joined()
        [row] = await nodes(db)
        assert row.connected
        async with db.session() as session:
            await session.execute(delete(Node))
            await session.commit()
        await rpc.control(row.id)
        assert await agent.close_code(2.0) == (4040, "node removed")


async def test_rpc_reaches_the_agent_in_process(server: Master, db: Database) -> None:
    from core.node_rpc import NodeOffline, RemoteError, RpcTimeout

    grid_token = await make_grid(db)
    headers = agent_headers("AAAA:1111", grid_token=grid_token)
    rpc = server.runtime.node_rpc
    async with fake_agent(server.url, headers) as agent:
        await agent.joined()
        [row] = await nodes(db)

        async def echo(params: list[Any]) -> Any:
            return {"echo": params}

        async def hang(params: list[Any]) -> Any:
            await asyncio.sleep(10)

        agent.handlers.update({"/test/echo": echo, "/test/hang": hang})
        assert await rpc.request(row, "/test/echo", [1, "a"]) == {"echo": [1, "a"]}
        with pytest.raises(RemoteError) as remote:
            await rpc.request(row.id, "/test/unknown", [])
        assert (remote.value.code, remote.value.message) == (501, "service not implemented")
        with pytest.raises(RpcTimeout):
            await rpc.request(row.id, "/test/hang", [], timeout=0.2)
        await rpc.notify(row.id, "/test/note", ["x"])
        assert await agent.notification("/test/note") == ["x"]
    with pytest.raises(NodeOffline):
        await rpc.request(row.id, "/test/echo", [])


async def test_rpc_works_from_another_threads_event_loop(server: Master, db: Database) -> None:
    """The embedded master's workers run on their own loop in another thread."""
    grid_token = await make_grid(db)
    rpc = server.runtime.node_rpc
    async with fake_agent(server.url, agent_headers("AAAA:1111", grid_token=grid_token)) as agent:
        await agent.joined()
        [row] = await nodes(db)

        def worker_thread() -> Any:
            return asyncio.run(rpc.request(row.id, "/agent/ping", [], timeout=5))

        assert await asyncio.to_thread(worker_thread) == "pong"
