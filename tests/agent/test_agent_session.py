"""The agent against a real WebSocket server acting as the master (in this process).

Docker is a stand-in here (tests/agent/fakes.py): these tests are about the wire protocol;
test_real_docker.py runs the same flow against real Docker daemons.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.connection import EXIT_FATAL_CLOSE, EXIT_OK, Agent
from agent.main import build_agent
from core.protocol import (
    PROTOCOL_VERSION,
    Notification,
    Request,
    RpcError,
    encode_response,
    parse_connected_at,
)
from tests.agent.fake_master import DEADLINE, MasterConnection, fake_master
from tests.agent.fakes import FakeDocker

NODE_ID = "AAAA:BBBB:CCCC:DDDD"


def make_config(url: str, **overrides: Any) -> AgentConfig:
    """A config for a test agent: explicit identity, fast stats."""
    values: dict[str, Any] = {
        "uri": url,
        "grid_token": "grid-token-value",
        "labels": ["region=test", "az=a"],
        "node_id": NODE_ID,
        "node_name": "node-1",
        "private_ip": "10.1.2.3",
        "stats_interval": 0.2,
    }
    values.update(overrides)
    return AgentConfig(**values)


@asynccontextmanager
async def running_agent(agent: Agent) -> AsyncIterator[asyncio.Task[int]]:
    """Run the agent as a task; stop it (and wait) when the block ends."""
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        agent.stop()
        async with asyncio.timeout(DEADLINE):
            await task


async def test_handshake_sends_kontena_headers() -> None:
    async with fake_master() as master:
        agent = build_agent(make_config(master.url), FakeDocker())
        async with running_agent(agent):
            conn = await master.accept()
            headers = conn.headers
            assert headers["Kontena-Node-Id"] == NODE_ID
            assert headers["Kontena-Node-Name"] == "node-1"
            assert headers["Kontena-Version"] == PROTOCOL_VERSION
            assert headers["Kontena-Node-Labels"] == "region=test,az=a"
            assert headers["Kontena-Grid-Token"] == "grid-token-value"
            assert "Kontena-Node-Token" not in headers
            sent_at = parse_connected_at(headers["Kontena-Connected-At"])
            assert abs(datetime.now(UTC) - sent_at) < timedelta(seconds=5)
            assert conn.socket.request is not None
            assert conn.socket.request.path == "/"


async def test_node_token_is_sent_instead_of_grid_token() -> None:
    async with fake_master() as master:
        config = make_config(master.url, node_token="node-token-1234567890")
        async with running_agent(build_agent(config, FakeDocker())):
            conn = await master.accept()
            assert conn.headers["Kontena-Node-Token"] == "node-token-1234567890"
            assert "Kontena-Grid-Token" not in conn.headers


async def test_identity_defaults_to_the_engine_id_and_hostname() -> None:
    async with fake_master() as master:
        config = make_config(master.url, node_id=None, node_name=None)
        async with running_agent(build_agent(config, FakeDocker())):
            conn = await master.accept()
            assert conn.headers["Kontena-Node-Id"].startswith("XI4K:NPOL:")
            assert conn.headers["Kontena-Node-Name"] == "engine-host"


async def test_requests_get_results_and_unknown_methods_get_501() -> None:
    async with (
        fake_master() as master,
        running_agent(build_agent(make_config(master.url), FakeDocker())),
    ):
        conn = await master.accept()
        ping = await conn.send_request("/agent/ping", [])
        unknown = await conn.send_request("/no/such_method", [1, 2])
        pong = await conn.response_to(ping)
        assert (pong.error, pong.result) == (None, "pong")
        missing = await conn.response_to(unknown)
        assert missing.error == {"code": 501, "message": "service not implemented"}
        assert missing.result is None


async def test_master_info_triggers_nodes_update_then_stats() -> None:
    docker = FakeDocker(running=3)
    async with fake_master() as master, running_agent(build_agent(make_config(master.url), docker)):
        conn = await master.accept()
        await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
        await conn.notify("/agent/node_info", [{"name": "node-1", "node_number": 1}])
        update: Request = await conn.next_frame(Request, "/nodes/update")
        node_id, info = update.params
        assert node_id == NODE_ID
        assert info["ID"] == NODE_ID
        assert info["Name"] == "node-1"
        assert info["ServerVersion"] == "20.10.24"
        assert info["OperatingSystem"] == "Debian GNU/Linux 12 (bookworm)"
        assert (info["NCPU"], info["MemTotal"], info["Driver"]) == (
            2,
            4_100_000_000,
            "overlay2",
        )
        assert info["Labels"] == ["provider=test"]
        assert info["PrivateIp"] == "10.1.2.3"
        assert info["PublicIp"] == "10.1.2.3"
        assert info["AgentVersion"] == PROTOCOL_VERSION
        assert info["Drivers"] == {
            "Volume": [{"name": "local", "version": None}],
            "Network": [
                {"name": n, "version": None} for n in ("bridge", "host", "null", "overlay")
            ],
        }

        stats: Notification = await conn.next_frame(Notification, "/nodes/stats")
        stats_node, body = stats.params
        assert stats_node == NODE_ID
        assert set(body) == {
            "memory",
            "load",
            "filesystem",
            "cpu",
            "network",
            "usage",
            "time",
        }
        assert set(body["memory"]) == {
            "total",
            "used",
            "free",
            "active",
            "inactive",
            "cached",
            "buffers",
        }
        assert body["memory"]["total"] > 0
        assert set(body["load"]) == {"1m", "5m", "15m"}
        assert body["filesystem"][0]["name"] == "/"
        assert body["filesystem"][0]["total"] > 0
        assert body["cpu"]["num_cores"] >= 1
        assert set(body["network"]) == {"internal", "external"}
        # 3 running containers over a ~0.2 s interval round to 0 or 1 container-second.
        assert body["usage"]["container_seconds"] in (0, 1)
        assert datetime.fromisoformat(body["time"]).tzinfo is not None


async def test_public_ip_override_is_reported() -> None:
    async with fake_master() as master:
        config = make_config(master.url, public_ip="203.0.113.9", private_ip=None)
        async with running_agent(build_agent(config, FakeDocker())):
            conn = await master.accept()
            await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
            update: Request = await conn.next_frame(Request, "/nodes/update")
            info = update.params[1]
            assert info["PublicIp"] == "203.0.113.9"
            # Detected from the default route (or the socket facing the master): an IPv4 here.
            assert info["PrivateIp"].count(".") == 3


async def test_nodes_update_is_retried_after_a_remote_error() -> None:
    async with (
        fake_master(replies={}) as master,
        running_agent(build_agent(make_config(master.url), FakeDocker())),
    ):
        conn = await master.accept()
        await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
        first: Request = await conn.next_frame(Request, "/nodes/update")
        await conn.socket.send(encode_response(first.id, RpcError(500, "db down"), None))
        second: Request = await conn.next_frame(Request, "/nodes/update", timeout=5)
        assert second.id != first.id
        assert second.params[0] == NODE_ID


async def test_reconnects_after_1011_and_stops_after_4001() -> None:
    async with fake_master() as master:
        agent = build_agent(make_config(master.url), FakeDocker(), backoff_base=0.05)
        task = asyncio.create_task(agent.run())
        try:
            first = await master.accept()
            await first.close(1011, "internal error")
            second: MasterConnection = await master.accept()
            assert second.headers["Kontena-Node-Id"] == NODE_ID
            await second.close(4001, "Invalid grid token")
            async with asyncio.timeout(DEADLINE):
                assert await task == EXIT_FATAL_CLOSE
        finally:
            agent.stop()


async def test_stop_closes_with_1000() -> None:
    docker = FakeDocker()
    async with fake_master() as master:
        agent = build_agent(make_config(master.url), docker)
        task = asyncio.create_task(agent.run())
        conn = await master.accept()
        agent.stop()
        async with asyncio.timeout(DEADLINE):
            assert await task == EXIT_OK
            assert await conn.close_code == 1000


async def test_stop_while_the_master_is_unreachable_returns_promptly() -> None:
    async with fake_master() as master:
        url = master.url
    # The server is gone: attempts fail and the agent waits in a (long) backoff; stop() must
    # end that wait instead of sleeping it out.
    agent = build_agent(make_config(url), FakeDocker(), backoff_base=5.0)
    task = asyncio.create_task(agent.run())
    agent.stop()
    async with asyncio.timeout(DEADLINE):
        assert await task == EXIT_OK


async def test_backoff_resets_after_a_successful_nodes_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    def record(attempt: int, **_: Any) -> float:
        attempts.append(attempt)
        return 0.0

    monkeypatch.setattr("agent.connection.backoff_delay", record)
    async with (
        fake_master() as master,
        running_agent(build_agent(make_config(master.url), FakeDocker())),
    ):
        for _ in range(2):  # two short connections that never reported the node
            await (await master.accept()).close(1011)
        conn = await master.accept()
        await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
        # Stats flow only after the master accepted /nodes/update.
        await conn.next_frame(Notification, "/nodes/stats")
        await conn.close(1011)
        await master.accept()
    assert attempts == [0, 1, 0]
