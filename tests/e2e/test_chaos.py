"""Chaos with real processes: kill an API replica, the leading scheduler, and Redis mid-deploy.

Two ``kontena-master api``, two ``kontena-master worker``, two ``kontena-master scheduler``
(leader and standby) and two ``kontena-agent`` processes on the two real Docker daemons, on this
run's PostgreSQL and a private redis-server the test restarts. Each agent reaches "its" API
replica through a loopback failover proxy (the load balancer of deploy/compose.yaml), which
moves it to the other replica when its own is gone. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select

from core.config import Settings
from core.ticks import LEADER_LEASE
from models import Lease, Node, Service
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_real_nodes import eventually
from tests.fixtures.processes import (
    FailoverProxy,
    Processes,
    RedisServer,
    role_env,
    wait_http_ready,
)
from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow

GRID = "chaos"
LEASE_TTL = 3  # seconds: the standby must lead within this after the leader dies
HTTPD = (
    "mkdir -p /www && echo hello-$KONTENA_SERVICE_INSTANCE_NUMBER > /www/index.html"
    " && exec httpd -f -p 8080 -h /www"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, so it can be restarted."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Every process the test starts; all stopped afterwards."""
    started = Processes(tmp_path)
    yield started
    started.close()


@pytest.fixture
async def proxies() -> AsyncIterator[list[FailoverProxy]]:
    """Proxies the test creates (the list is filled by the test); all stopped afterwards."""
    created: list[FailoverProxy] = []
    yield created
    for proxy in created:
        await proxy.stop()


class Cluster:
    """The running master: its API URLs and where each role runs."""

    def __init__(self, processes: Processes, admin: Caller, db: Database) -> None:
        self.processes = processes
        self.admin = admin
        self.db = db
        self.api_ports: dict[str, int] = {}

    def url(self, api: str) -> str:
        """Base URL of API replica ``api``."""
        return f"http://127.0.0.1:{self.api_ports[api]}"

    def name_of_pid(self, pid: int) -> str:
        """The process name the test gave ``pid``."""
        return next(n for n, p in self.processes.procs.items() if p.pid == pid)

    async def nodes(self) -> dict[str, Node]:
        """Node rows by name."""
        async with self.db.session() as session:
            rows = (await session.execute(select(Node))).scalars().all()
        return {row.name: row for row in rows}

    async def holder_of(self, node: str) -> str | None:
        """The API process (by test name) holding ``node``'s socket, if it is connected."""
        row = (await self.nodes()).get(node)
        if row is None or not row.connected or not row.connection_holder:
            return None
        return self.name_of_pid(int(row.connection_holder.split(":")[1]))

    async def lease(self) -> Lease:
        """The scheduler's lease row."""
        async with self.db.session() as session:
            lease = await session.get(Lease, LEADER_LEASE, populate_existing=True)
        assert lease is not None
        return lease

    async def leader(self) -> tuple[str, int] | None:
        """The scheduler (by test name) holding an unexpired lease, with its epoch."""
        async with self.db.session() as session:
            lease = await session.get(Lease, LEADER_LEASE, populate_existing=True)
        if lease is None or lease.expires_at < utcnow():
            return None
        return self.name_of_pid(int(lease.holder.split(":")[1])), lease.epoch


async def deploy_and_wait(
    http: httpx.AsyncClient, admin: Caller, path: str, body: dict[str, Any] | None = None
) -> tuple[dict[str, Any], float]:
    """POST ``path`` (deploy or scale) and poll the deploy until it ends; returns it and seconds."""
    started = time.monotonic()
    response = await http.post(path, json=body or {}, headers=admin.headers)
    assert response.status_code == 200, response.text
    return await finished(http, admin, response.json()), time.monotonic() - started


async def finished(
    http: httpx.AsyncClient, admin: Caller, deploy: dict[str, Any]
) -> dict[str, Any]:
    """Poll deploy ``deploy`` until it is success or error."""
    url = f"/v1/services/{GRID}/null/web/deploys/{deploy['id']}"

    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(url, headers=admin.headers)).json()
        return body if body["state"] in ("success", "error") else None

    result: dict[str, Any] = await eventually(done, deadline=90, what="deploy finished")
    return result


def running(clients: list[docker.DockerClient], service_id: str) -> dict[str, int]:
    """Running containers of the service: name → daemon index (asserting no duplicates)."""
    found: dict[str, int] = {}
    for index, client in enumerate(clients):
        for container in client.containers.list(
            filters={"label": f"io.kontena.service.id={service_id}"}, ignore_removed=True
        ):
            assert container.name not in found, f"{container.name} runs twice"
            found[container.name] = index
    return found


async def test_the_master_survives_killed_processes_and_a_redis_restart(
    settings: Settings,
    db: Database,
    admin: Caller,
    processes: Processes,
    proxies: list[FailoverProxy],
    redis_server: RedisServer,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
) -> None:
    cluster = Cluster(processes, admin, db)
    env = role_env(
        settings,
        redis_server.url,
        KONTENA_LEASE_TTL=str(LEASE_TTL),
        # Lost work (a Redis restart empties the queues) is re-sent 2 s after it went quiet.
        KONTENA_RECOVERY_AFTER="2",
    )
    t0 = time.monotonic()
    try:
        await _start_master(cluster, env)
    except BaseException:
        print(processes.tails(), file=sys.stderr)
        raise
    print(f"\nAPI replicas answering {time.monotonic() - t0:.1f} s after start")

    # node-1 prefers api-a, node-2 prefers api-b; each falls back to the other.
    a, b = ("127.0.0.1", cluster.api_ports["api-a"]), ("127.0.0.1", cluster.api_ports["api-b"])
    for upstreams in ([a, b], [b, a]):
        proxy = FailoverProxy(upstreams)
        await proxy.start()
        proxies.append(proxy)

    try:
        async with (
            httpx.AsyncClient(base_url=cluster.url("api-a"), timeout=30) as http_a,
            httpx.AsyncClient(base_url=cluster.url("api-b"), timeout=30) as http_b,
        ):
            await _scenario(
                cluster,
                http_a,
                http_b,
                proxies,
                redis_server,
                docker_hosts,
                docker_clients,
                busybox_image,
            )
    except BaseException:
        print(processes.tails(), file=sys.stderr)
        raise


async def _start_master(cluster: Cluster, env: dict[str, str]) -> None:
    """Both API replicas, both workers, leader and standby scheduler; wait for the APIs."""
    processes = cluster.processes
    for api in ("api-a", "api-b"):
        cluster.api_ports[api] = free_port()
        processes.master(api, "api", {**env, "KONTENA_PORT": str(cluster.api_ports[api])})
    for worker in ("worker-1", "worker-2"):
        processes.master(worker, "worker", env)
    processes.master("scheduler-1", "scheduler", env)
    processes.master("scheduler-2", "scheduler", env)
    await asyncio.gather(
        *(wait_http_ready(processes.procs[a], cluster.url(a)) for a in cluster.api_ports)
    )


async def _scenario(
    cluster: Cluster,
    http_a: httpx.AsyncClient,
    http_b: httpx.AsyncClient,
    proxies: list[FailoverProxy],
    redis_server: RedisServer,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
) -> None:
    admin, processes = cluster.admin, cluster.processes
    grid = await http_a.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    for index, proxy in enumerate(proxies):
        name = f"node-{index + 1}"
        processes.start(
            name,
            [sys.executable, "-m", "agent.main"],
            {
                **agent_env(),
                "KONTENA_URI": proxy.url,
                "KONTENA_TOKEN": grid.json()["token"],
                "DOCKER_HOST": docker_hosts[index],
                "KONTENA_NODE_ID": f"CHAOS:{name.upper()}",
                "KONTENA_NODE_NAME": name,
                "KONTENA_POD_SYNC_INTERVAL": "5",
                "KONTENA_LOG_LEVEL": "info",
            },
        )

    async def held_apart() -> bool:
        return (await cluster.holder_of("node-1"), await cluster.holder_of("node-2")) == (
            "api-a",
            "api-b",
        )

    await eventually(held_apart, deadline=120, what="node-1 on api-a and node-2 on api-b")

    created = await http_b.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": "web",
            "image": busybox_image,
            "stateful": False,
            "instances": 2,
            "cmd": ["/bin/sh", "-c", HTTPD],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    base = f"/v1/services/{GRID}/null/web"
    async with cluster.db.session() as session:
        service_id = str(
            (await session.execute(select(Service.id).where(Service.name == "web"))).scalar_one()
        )

    deploy, seconds = await deploy_and_wait(http_a, admin, f"{base}/deploy")
    assert deploy["state"] == "success", deploy
    print(f"2-instance deploy: {seconds:.2f} s")
    assert set(running(docker_clients, service_id).values()) == {0, 1}
    deploy, seconds = await deploy_and_wait(http_b, admin, f"{base}/scale", {"instances": 3})
    assert deploy["state"] == "success", deploy
    print(f"scale to 3: {seconds:.2f} s")
    assert sorted(running(docker_clients, service_id)) == ["web-1", "web-2", "web-3"]

    # SIGKILL api-a: node-1's agent reconnects through the proxy to api-b.
    killed = time.monotonic()
    processes.kill("api-a")

    async def node_1_on_b() -> bool:
        return await cluster.holder_of("node-1") == "api-b"

    await eventually(node_1_on_b, deadline=30, what="node-1 reconnected to api-b", interval=0.05)
    print(f"node-1 back on api-b {time.monotonic() - killed:.2f} s after SIGKILL of api-a")
    deploy, seconds = await deploy_and_wait(http_b, admin, f"{base}/deploy", {"force": True})
    assert deploy["state"] == "success", deploy
    print(f"forced 3-instance deploy with one API replica left: {seconds:.2f} s")
    assert sorted(running(docker_clients, service_id)) == ["web-1", "web-2", "web-3"]

    # SIGKILL the leading scheduler: the standby leads within the lease TTL.
    leader, epoch = await eventually(cluster.leader, deadline=30, what="a scheduler leads")
    standby = "scheduler-2" if leader == "scheduler-1" else "scheduler-1"
    killed = time.monotonic()
    processes.kill(leader)
    dead_lease = await cluster.lease()  # read after the kill: the last renewal it made

    async def standby_leads() -> bool:
        current = await cluster.leader()
        return current is not None and current[0] == standby

    await eventually(standby_leads, deadline=3 * LEASE_TTL, what="standby leads", interval=0.05)
    print(f"standby scheduler leads {time.monotonic() - killed:.2f} s after SIGKILL of the leader")
    assert (await cluster.leader()) == (standby, epoch + 1)
    # The standby polls until the dead leader's lease expires and takes it right after (its
    # own clock wrote expires_at = acquired + TTL): at most a TTL after the leader's last
    # renewal, plus its polling step (TTL/3) and a margin for a busy host.
    taken = await cluster.lease()
    acquired = taken.expires_at - timedelta(seconds=LEASE_TTL)
    late = (acquired - dead_lease.expires_at).total_seconds()
    print(f"lease taken {late:.2f} s after the dead leader's lease expired")
    assert late < LEASE_TTL / 3 + 1.0, late

    # Redis dies while a deploy runs, and a scale is asked for while it is down (its message
    # cannot be sent: the API still answers, the recovery tick sends it once Redis is back).
    # Redis comes back empty; both deploys still end `success`.
    started = time.monotonic()
    response = await http_b.post(f"{base}/deploy", json={"force": True}, headers=admin.headers)
    assert response.status_code == 200, response.text
    running_deploy = response.json()
    url = f"{base}/deploys/{running_deploy['id']}"

    async def ongoing() -> bool:
        body = (await http_b.get(url, headers=admin.headers)).json()
        assert body["state"] not in ("success", "error"), body
        return bool(body["state"] == "ongoing")

    await eventually(ongoing, deadline=30, what="deploy ongoing", interval=0.02)
    redis_server.kill()
    down_at = time.monotonic()
    print(f"Redis killed {down_at - started:.2f} s into the deploy")
    response = await http_b.post(f"{base}/scale", json={"instances": 4}, headers=admin.headers)
    assert response.status_code == 200, response.text
    scale = response.json()
    assert scale["state"] == "created"
    redis_server.start()
    print(f"Redis back (empty) after {time.monotonic() - down_at:.2f} s")
    deploy = await finished(http_b, admin, running_deploy)
    print(f"deploy through the Redis restart: {time.monotonic() - started:.2f} s")
    assert deploy["state"] == "success", deploy
    deploy = await finished(http_b, admin, scale)
    print(f"scale asked while Redis was down: done {time.monotonic() - started:.2f} s after")
    assert deploy["state"] == "success", deploy
    assert sorted(running(docker_clients, service_id)) == ["web-1", "web-2", "web-3", "web-4"]
    for name in ("api-b", "worker-1", "worker-2", standby, "node-1", "node-2"):
        assert processes.alive(name), f"{name} died"

    # And a deploy right after works as usual, without waiting for recovery.
    deploy, seconds = await deploy_and_wait(http_b, admin, f"{base}/deploy", {"force": True})
    assert deploy["state"] == "success", deploy
    print(f"forced 4-instance deploy after the Redis restart: {seconds:.2f} s")


def agent_env() -> dict[str, str]:
    """The agent's environment: this one's, without the master's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KONTENA_")}
