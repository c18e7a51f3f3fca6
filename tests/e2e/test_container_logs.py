"""Container logs end to end: a real agent follows a busybox container on a real Docker daemon.

The API runs in the test's loop with node RPC through Redis, a real Dramatiq worker deploys,
and the agent is a ``python -m agent.main`` process (tests.e2e.test_deploy's fixtures).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import docker
import dramatiq
import httpx
import pytest

from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, agents, deployed, runtime, worker
from tests.e2e.test_real_nodes import Agents, eventually, online

__all__ = ["agents", "runtime", "worker"]  # fixtures this module uses from test_deploy

pytestmark = pytest.mark.slow

LINES = 10_000
# 10,000 numbered lines at once, one line on stderr, then whatever the test drops into
# /tmp/say (written by `docker exec`, so it lands in the container's own output).
TALKER = (
    f"seq 1 {LINES} | sed 's/^/line-/'; echo err-1 >&2; "
    "while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm -f /tmp/say; fi; sleep 0.05; done"
)
BASE = f"/v1/services/{GRID}/null/talker"


def say(client: docker.DockerClient, container: str, *lines: str) -> None:
    """Make the container print ``lines`` (atomically: written aside, then moved in place)."""
    text = "\\n".join(lines)
    client.containers.get(container).exec_run(
        ["/bin/sh", "-c", f"printf '{text}\\n' > /tmp/say.tmp && mv /tmp/say.tmp /tmp/say"]
    )


async def all_lines(client: httpx.AsyncClient, admin: Caller) -> list[dict[str, Any]]:
    """Every stored line of the service, paged with ``from`` 1,000 at a time."""
    found: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        response = await client.get(
            f"{BASE}/container_logs",
            params={"from": cursor, "limit": 1000},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        page = response.json()["logs"]
        if not page:
            return found
        found.extend(page)
        cursor = page[-1]["id"]


async def test_lines_arrive_in_order_follow_streams_and_an_agent_restart_loses_nothing(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    worker: dramatiq.Worker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
) -> None:
    grid = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    env = {"KONTENA_TOKEN": grid.json()["token"], "KONTENA_POD_SYNC_INTERVAL": "5"}
    agents.start("node-1", docker_hosts[0], **env)
    await eventually(online(client, admin, "node-1"), deadline=30, what="node online")
    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": "talker",
            "image": busybox_image,
            "stateful": False,
            "cmd": ["/bin/sh", "-c", TALKER],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    response = await client.post(f"{BASE}/deploy", json={}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert (await deployed(client, admin, "talker", response.json()))["state"] == "success"

    # 1. All 10,000 lines (and the stderr one), each once, in order, through `from` paging.
    started = time.monotonic()

    async def shipped() -> bool:
        # The newest two lines only: paging through everything on each poll would slow the
        # very process that stores them.
        newest = await client.get(f"{BASE}/container_logs?limit=2", headers=admin.headers)
        return f"line-{LINES}" in {e["data"] for e in newest.json()["logs"]}

    await eventually(shipped, deadline=60, what="10,000 lines stored", interval=0.2)
    print(f"\n{LINES} lines readable after {time.monotonic() - started:.2f} s")
    lines = await eventually(lambda: all_lines(client, admin), deadline=5, what="all lines")
    stdout = [entry["data"] for entry in lines if entry["type"] == "stdout"]
    assert stdout == [f"line-{n}" for n in range(1, LINES + 1)]
    assert [e["data"] for e in lines if e["type"] == "stderr"] == ["err-1"]
    first = lines[0]
    assert first["name"] == "talker-1" and first["instance_number"] == 1
    assert first["service"] == {"id": f"{GRID}/null/talker", "name": "talker"}
    assert first["stack"] == {"id": f"{GRID}/null", "name": "null"}
    assert first["grid"] == {"id": GRID, "name": GRID}
    assert first["node"] == {"name": "node-1"}
    grid_page = await client.get(
        f"/v1/grids/{GRID}/container_logs",
        params={"services": "talker", "limit": 5},
        headers=admin.headers,
    )
    assert [e["id"] for e in grid_page.json()["logs"]] == [e["id"] for e in lines[-5:]]

    # 2. follow (resuming after the last id) shows a new line within seconds.
    docker_client = docker_clients[0]
    async with client.stream(
        "GET",
        f"{BASE}/container_logs",
        params={"follow": "1", "from": lines[-1]["id"]},
        headers=admin.headers,
        timeout=httpx.Timeout(30, read=30),
    ) as stream:
        said = time.monotonic()
        await asyncio.to_thread(say, docker_client, "talker-1", "followed-1")
        entry = await asyncio.wait_for(next_entry(stream.aiter_bytes()), timeout=15)
        latency = time.monotonic() - said
    print(f"follow delivered a new line {latency:.2f} s after the container wrote it")
    assert entry["data"] == "followed-1"

    # 3. Kill the agent, let the container talk meanwhile, start it again: every line once.
    agents.procs["node-1"].kill()
    agents.procs["node-1"].wait(10)
    await asyncio.to_thread(say, docker_client, "talker-1", "while-down-1", "while-down-2")

    async def printed_while_down() -> bool:
        # The container printed them (Docker has them) before the agent comes back.
        logs = await asyncio.to_thread(docker_client.containers.get("talker-1").logs, tail=5)
        return b"while-down-2" in logs

    await eventually(printed_while_down, deadline=10, what="lines printed while the agent is down")
    agents.start("node-1", docker_hosts[0], **env)
    await asyncio.to_thread(say, docker_client, "talker-1", "after-restart")

    async def restarted() -> list[dict[str, Any]] | None:
        found = await all_lines(client, admin)
        return found if found and found[-1]["data"] == "after-restart" else None

    lines = await eventually(restarted, deadline=60, what="lines after restart", interval=0.3)
    stdout = [entry["data"] for entry in lines if entry["type"] == "stdout"]
    expected = [f"line-{n}" for n in range(1, LINES + 1)]
    expected += ["followed-1", "while-down-1", "while-down-2", "after-restart"]
    assert stdout == expected
    assert len({entry["id"] for entry in lines}) == len(lines)


async def next_entry(chunks: Any) -> dict[str, Any]:
    """The first JSON object of a follow stream (entries are bare objects, spaces keep alive)."""
    buffer = b""
    decoder = json.JSONDecoder()
    async for chunk in chunks:
        buffer += chunk
        text = buffer.decode().lstrip()
        if not text:
            continue
        try:
            entry, _ = decoder.raw_decode(text)
        except json.JSONDecodeError:
            continue
        return dict(entry)
    raise AssertionError("the follow stream ended")
