"""The agent against real Docker daemons (the ones tests/run.sh starts as test nodes).

Runs when KONTENA_TEST_DOCKER_HOSTS lists DOCKER_HOST URLs (comma separated); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import docker
import pytest

from agent.docker_client import DockerEngine
from agent.main import build_agent
from core.protocol import Notification, Request
from tests.agent.fake_master import fake_master
from tests.agent.test_agent_session import make_config, running_agent

HOSTS = [h.strip() for h in os.environ.get("KONTENA_TEST_DOCKER_HOSTS", "").split(",") if h.strip()]
pytestmark = pytest.mark.skipif(
    not HOSTS,
    reason="KONTENA_TEST_DOCKER_HOSTS is not set (tests/run.sh exports it when it runs the "
    "Docker test daemons)",
)


def engine_info(host: str) -> dict[str, Any]:
    """``docker info`` straight from the SDK, to compare with what the agent reports."""
    client = docker.DockerClient(base_url=host, version="auto", timeout=30)
    try:
        info: dict[str, Any] = client.info()
        return info
    finally:
        client.close()


async def test_agent_reports_the_real_engine() -> None:
    host = HOSTS[0]
    expected = await asyncio.to_thread(engine_info, host)
    engine = DockerEngine(host)
    async with fake_master() as master:
        config = make_config(master.url, docker_host=host, node_id=None, node_name=None)
        async with running_agent(build_agent(config, engine)):
            conn = await master.accept(timeout=30)
            assert conn.headers["Kontena-Node-Id"] == expected["ID"]
            assert conn.headers["Kontena-Node-Name"] == expected["Name"]
            await conn.notify("/agent/master_info", [{"version": "1.5.2"}])

            update: Request = await conn.next_frame(Request, "/nodes/update", timeout=30)
            node_id, info = update.params
            assert node_id == expected["ID"]
            for key in ("ServerVersion", "OperatingSystem", "KernelVersion", "NCPU", "MemTotal"):
                assert info[key] == expected[key], key
            assert info["DockerRootDir"] == expected["DockerRootDir"]
            assert info["Labels"] == expected["Labels"]
            assert {"name": "local", "version": None} in info["Drivers"]["Volume"]
            assert {"name": "bridge", "version": None} in info["Drivers"]["Network"]

            stats: Notification = await conn.next_frame(Notification, "/nodes/stats", timeout=30)
            body = stats.params[1]
            assert body["filesystem"][0]["name"] == expected["DockerRootDir"]
            assert body["filesystem"][0]["total"] > 0
            assert isinstance(body["usage"]["container_seconds"], int)
    engine.close()


async def test_node_id_override_makes_agents_on_one_engine_distinct() -> None:
    host = HOSTS[-1]
    engines = [DockerEngine(host), DockerEngine(host)]
    async with fake_master() as master:
        first = make_config(master.url, docker_host=host, node_id="T:1", node_name="t1")
        second = make_config(master.url, docker_host=host, node_id="T:2", node_name="t2")
        async with (
            running_agent(build_agent(first, engines[0])),
            running_agent(build_agent(second, engines[1])),
        ):
            ids = set()
            for _ in range(2):
                conn = await master.accept(timeout=30)
                await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
                update: Request = await conn.next_frame(Request, "/nodes/update", timeout=30)
                assert update.params[0] == update.params[1]["ID"] == conn.headers["Kontena-Node-Id"]
                ids.add(update.params[0])
            assert ids == {"T:1", "T:2"}
    for engine in engines:
        engine.close()
