"""Real agents on real Docker daemons join the master, report, drop out and come back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Caller

pytestmark = pytest.mark.slow

GRID = "nodes-e2e"


class Agents:
    """Starts `python -m agent.main` processes against the master under test; kills them all."""

    def __init__(self, master_url: str, logs: Path) -> None:
        self.uri = master_url.replace("http://", "ws://")
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, docker_host: str, **env: str) -> subprocess.Popen[bytes]:
        """Start the agent ``name`` (also its node id) on ``docker_host``."""
        settings = {
            "KONTENA_URI": self.uri,
            "DOCKER_HOST": docker_host,
            "KONTENA_NODE_ID": f"E2E:{name.upper()}",
            "KONTENA_NODE_NAME": name,
            "KONTENA_STATS_INTERVAL": "5",
            "KONTENA_LOG_LEVEL": "info",
            **env,
        }
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.main"],
                env={**os.environ, **settings},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        """What the agent printed so far."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """SIGKILL every agent still running."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def agents(client: httpx.AsyncClient, tmp_path: Path) -> Iterator[Agents]:
    """Agent processes for this test, all gone afterwards."""
    started = Agents(str(client.base_url), tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Caller) -> AsyncIterator[dict[str, Any]]:
    """A grid whose token the agents join with."""
    response = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert response.status_code == 201
    yield response.json()


async def eventually(
    check: Callable[[], Any], *, deadline: float, what: str, interval: float = 0.1
) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {deadline} s")
        await asyncio.sleep(interval)


async def nodes_by_name(client: httpx.AsyncClient, admin: Caller) -> dict[str, dict[str, Any]]:
    """The grid's nodes as the API shows them."""
    response = await client.get(f"/v1/grids/{GRID}/nodes", headers=admin.headers)
    return {node["name"]: node for node in response.json()["nodes"]}


def online(client: httpx.AsyncClient, admin: Caller, *names: str) -> Callable[[], Any]:
    """A check: are all ``names`` online?"""

    async def check() -> dict[str, dict[str, Any]] | None:
        nodes = await nodes_by_name(client, admin)
        if all(nodes.get(n, {}).get("status") == "online" for n in names):
            return nodes
        return None

    return check


async def test_agents_join_with_grid_and_node_tokens_and_report_the_real_engine(
    client: httpx.AsyncClient,
    admin: Caller,
    grid: dict[str, Any],
    agents: Agents,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
) -> None:
    agents.start("node-1", docker_hosts[0], KONTENA_TOKEN=grid["token"], KONTENA_NODE_LABELS="az=a")
    agents.start("node-2", docker_hosts[1], KONTENA_TOKEN=grid["token"], KONTENA_NODE_LABELS="az=b")
    created = await client.post(
        f"/v1/grids/{GRID}/nodes",
        json={"name": "node-3", "labels": ["az=c"]},
        headers=admin.headers,
    )
    assert created.status_code == 201 and created.json()["status"] == "created"
    token = (await client.get(f"/v1/nodes/{GRID}/node-3/token", headers=admin.headers)).json()
    agents.start("node-3", docker_hosts[0], KONTENA_NODE_TOKEN=token["token"])

    nodes = await eventually(
        online(client, admin, "node-1", "node-2", "node-3"), deadline=30, what="three nodes online"
    )
    for name, engine in (("node-1", docker_clients[0]), ("node-2", docker_clients[1])):
        info = engine.info()
        node = nodes[name]
        assert node["docker_version"] == info["ServerVersion"]
        assert node["os"] == info["OperatingSystem"]
        assert node["cpus"] == info["NCPU"]
        assert node["mem_total"] == info["MemTotal"]
        assert node["engine_root_dir"] == info["DockerRootDir"]
        assert {"name": "local", "version": None} in node["volume_drivers"]
        assert any(d["name"] == "bridge" for d in node["network_drivers"])
        assert node["connected"] is True and node["agent_version"]
    assert nodes["node-1"]["labels"] == ["az=a"] and nodes["node-2"]["labels"] == ["az=b"]
    assert nodes["node-3"]["node_id"] == "E2E:NODE-3" and nodes["node-3"]["has_token"] is True
    assert sorted(n["node_number"] for n in nodes.values()) == [1, 2, 3]


async def test_a_killed_agent_goes_offline_and_returns_as_the_same_node(
    client: httpx.AsyncClient,
    admin: Caller,
    grid: dict[str, Any],
    agents: Agents,
    docker_hosts: list[str],
) -> None:
    proc = agents.start("node-1", docker_hosts[0], KONTENA_TOKEN=grid["token"])
    before = (await eventually(online(client, admin, "node-1"), deadline=30, what="online"))[
        "node-1"
    ]

    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)

    async def offline() -> bool:
        return (await nodes_by_name(client, admin))["node-1"]["status"] == "offline"

    await eventually(offline, deadline=30, what="node offline after SIGKILL", interval=0.02)
    print(f"\nnode offline {time.monotonic() - killed_at:.3f} s after SIGKILL of its agent")

    agents.start("node-1", docker_hosts[0], KONTENA_TOKEN=grid["token"])
    after = (await eventually(online(client, admin, "node-1"), deadline=30, what="back online"))[
        "node-1"
    ]
    assert (after["id"], after["node_number"]) == (before["id"], before["node_number"])
    assert len(await nodes_by_name(client, admin)) == 1


async def test_token_reset_disconnects_the_agent_and_only_the_new_token_works(
    client: httpx.AsyncClient,
    admin: Caller,
    grid: dict[str, Any],
    agents: Agents,
    docker_hosts: list[str],
) -> None:
    await client.post(f"/v1/grids/{GRID}/nodes", json={"name": "node-t"}, headers=admin.headers)
    path = f"/v1/nodes/{GRID}/node-t"
    old = (await client.get(f"{path}/token", headers=admin.headers)).json()["token"]
    agents.start("node-t", docker_hosts[0], KONTENA_NODE_TOKEN=old)
    await eventually(online(client, admin, "node-t"), deadline=30, what="online with node token")

    reset = await client.put(
        f"{path}/token", json={"reset_connection": True}, headers=admin.headers
    )
    assert reset.status_code == 200
    new = reset.json()["token"]
    assert new != old

    async def refused_with_4002() -> bool:
        node = (await client.get(path, headers=admin.headers)).json()
        return node["status"] == "offline" and "4002" in agents.log("node-t")

    # The running agent is disconnected (4031), reconnects with its old token and is refused.
    await eventually(refused_with_4002, deadline=30, what="old token refused with 4002")
    assert "4031" in agents.log("node-t")

    agents.stop_all()
    agents.start("node-t", docker_hosts[0], KONTENA_NODE_TOKEN=new)
    await eventually(online(client, admin, "node-t"), deadline=30, what="online with new token")


async def test_metrics_have_per_minute_points_after_agents_report(
    client: httpx.AsyncClient,
    admin: Caller,
    grid: dict[str, Any],
    agents: Agents,
    docker_hosts: list[str],
) -> None:
    agents.start("node-1", docker_hosts[0], KONTENA_TOKEN=grid["token"])
    agents.start("node-2", docker_hosts[1], KONTENA_TOKEN=grid["token"])
    await eventually(online(client, admin, "node-1", "node-2"), deadline=30, what="online")

    async def points(path: str) -> list[dict[str, Any]]:
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 200
        return [p for p in response.json()["stats"] if p["memory"]["total"]]

    # Stats arrive every 5 s here (60 s by default); two minutes with data take at most ~65 s.
    node_points = await eventually(
        lambda: _at_least(points(f"/v1/nodes/{GRID}/node-1/metrics"), 2),
        deadline=130,
        what="two per-minute node metrics points",
        interval=2,
    )
    grid_points = await points(f"/v1/grids/{GRID}/metrics")
    assert len(grid_points) >= 2
    latest_node, latest_grid = node_points[-1], grid_points[-1]
    assert latest_node["cpu"]["cores"] >= 1
    assert 0 < latest_node["memory"]["used"] <= latest_node["memory"]["total"]
    # Two nodes on one machine: the grid sums their memory.
    assert latest_grid["memory"]["total"] >= latest_node["memory"]["total"]
    # Containers and their stats: tests/e2e/test_container_stats.py.
    stats = await client.get(f"/v1/nodes/{GRID}/node-1/stats", headers=admin.headers)
    assert stats.status_code == 200 and isinstance(stats.json()["stats"], list)


async def _at_least(points: Any, count: int) -> Any:
    found = await points
    return found if len(found) >= count else None
