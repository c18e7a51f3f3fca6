"""Deploys end to end: the API, a real Dramatiq worker, real agents on two real Docker daemons.

The API runs in the test's event loop (agent sockets included) with node RPC through Redis, as
in production; the worker runs in threads of this process on the Redis broker; the agents are
``python -m agent.main`` processes, one per Docker daemon.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import dramatiq
import httpx
import pytest
import redis
from sqlalchemy import select

from core.config import Settings
from core.rate_limit import RedisRateLimiter
from core.rpc_redis import RedisNodeRpc
from core.runtime import Runtime
from core.vault import Vault
from models import Service
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_real_nodes import Agents, eventually, online
from workers.actors import load_actors
from workers.broker import DramatiqSender, build_broker
from workers.run import start_in_process_worker

pytestmark = pytest.mark.slow

GRID = "nodes-e2e"  # the name tests.e2e.test_real_nodes.online() looks at
# Each instance writes its number into the page it serves, so HTTP shows which one answered.
HTTPD = (
    "mkdir -p /www && echo hello-$KONTENA_SERVICE_INSTANCE_NUMBER > /www/index.html"
    " && exec httpd -f -p 8080 -h /www"
)


@pytest.fixture
async def runtime(
    settings: Settings, db: Database, vault: Vault, redis_client: redis.Redis
) -> AsyncIterator[Runtime]:
    """The API's runtime with node RPC through Redis, so the worker's calls reach the sockets."""
    from redis.asyncio import Redis as AsyncRedis

    redis_client.flushdb()
    yield Runtime(
        settings=settings,
        db=db,
        vault=vault,
        sender=DramatiqSender(build_broker(settings)),
        rate_limiter=RedisRateLimiter(
            AsyncRedis.from_url(settings.redis_url),
            settings.token_rate_limit,
            settings.token_rate_window,
        ),
        node_rpc=RedisNodeRpc(settings.redis_url, lambda: db),
    )


@pytest.fixture
def worker(settings: Settings, runtime: Runtime) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker on the Redis broker, in threads of this process."""
    broker = build_broker(settings)
    load_actors(broker)
    running = start_in_process_worker(broker, 4)
    yield running
    running.stop(timeout=10_000)
    broker.close()


@pytest.fixture
def agents(client: httpx.AsyncClient, tmp_path: Any) -> Iterator[Agents]:
    """Agent processes for this test, all gone afterwards."""
    started = Agents(str(client.base_url), tmp_path)
    yield started
    started.stop_all()


async def deployed(
    client: httpx.AsyncClient, admin: Caller, service: str, deploy: dict[str, Any]
) -> dict[str, Any]:
    """Poll the deploy object until it is finished; returns it."""
    url = f"/v1/services/{GRID}/null/{service}/deploys/{deploy['id']}"

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(url, headers=admin.headers)).json()
        return body if body["state"] in ("success", "error") else None

    result: dict[str, Any] = await eventually(
        finished, deadline=120, what=f"deploy of {service} finished", interval=0.1
    )
    return result


def containers(
    clients: list[docker.DockerClient], service_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Running containers of the service on each daemon: name → [{daemon, port}]."""
    found: dict[str, list[dict[str, Any]]] = {}
    for index, client in enumerate(clients):
        # ignore_removed: the agent may remove a container between list and inspect.
        for container in client.containers.list(
            filters={"label": f"io.kontena.service.id={service_id}"}, ignore_removed=True
        ):
            ports = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp") or []
            found.setdefault(container.name, []).append(
                {"daemon": index, "port": int(ports[0]["HostPort"]) if ports else None}
            )
    return found


def http_get(port: int) -> str:
    """GET / on 127.0.0.1:port (retried briefly: httpd may still be starting)."""
    end = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                return str(reply.read().decode().strip())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


async def test_a_service_deploys_to_real_nodes_scales_and_reports_a_bad_image(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    worker: dramatiq.Worker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    grid = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    token = grid.json()["token"]
    for index, zone in enumerate(("a", "b")):
        agents.start(
            f"node-{index + 1}",
            docker_hosts[index],
            KONTENA_TOKEN=token,
            KONTENA_NODE_LABELS=f"az={zone}",
            KONTENA_POD_SYNC_INTERVAL="5",
        )
    await eventually(online(client, admin, "node-1", "node-2"), deadline=30, what="nodes online")

    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": "web",
            "image": busybox_image,
            "stateful": False,
            "instances": 2,
            "cmd": ["/bin/sh", "-c", HTTPD],
            # node_port 0: Docker picks a free host port, since both daemons share 127.0.0.1.
            "ports": [{"node_port": 0, "container_port": 8080, "ip": "127.0.0.1"}],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    base = f"/v1/services/{GRID}/null/web"

    started = time.monotonic()
    response = await client.post(f"{base}/deploy", json={}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "created"
    deploy = await deployed(client, admin, "web", response.json())
    elapsed = time.monotonic() - started
    print(f"\n2-instance deploy on two real nodes: {elapsed:.2f} s")
    assert deploy["state"] == "success", deploy
    assert sorted((d["instance_number"], d["state"]) for d in deploy["instance_deploys"]) == [
        (1, "success"),
        (2, "success"),
    ]
    assert {d["node"] for d in deploy["instance_deploys"]} == {"node-1", "node-2"}

    service_id = await _service_id(db, "web")
    running = containers(docker_clients, service_id)
    assert sorted(running) == ["web-1", "web-2"]
    assert {c[0]["daemon"] for c in running.values()} == {0, 1}  # one on each daemon
    for name, (where,) in running.items():
        assert http_get(where["port"]) == f"hello-{name.rsplit('-', 1)[1]}"

    response = await client.post(f"{base}/scale", json={"instances": 3}, headers=admin.headers)
    assert response.status_code == 200, response.text
    deploy = await deployed(client, admin, "web", response.json())
    assert deploy["state"] == "success", deploy
    running = containers(docker_clients, service_id)
    assert sorted(running) == ["web-1", "web-2", "web-3"]
    assert all(len(found) == 1 for found in running.values())  # no duplicates anywhere
    assert http_get(running["web-3"][0]["port"]) == "hello-3"

    # A registry on a closed loopback port: the pull fails at once and nothing leaves the host.
    missing = "127.0.0.1:1/does-not-exist:1"
    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={"name": "broken", "image": missing, "stateful": False},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    response = await client.post(
        f"/v1/services/{GRID}/null/broken/deploy", json={}, headers=admin.headers
    )
    deploy = await deployed(client, admin, "broken", response.json())
    assert deploy["state"] == "error", deploy
    assert deploy["reason"].startswith(
        f"halting deploy of {GRID}/null/broken, one or more instances failed: broken-1 on node"
    )
    assert missing in deploy["reason"]
    assert deploy["instance_deploys"][0]["state"] == "error"
    print(f"bad image: {deploy['reason']}")

    removed = await client.delete(base, headers=admin.headers)
    assert removed.status_code == 200, removed.text

    async def gone() -> bool:
        async with db.session() as session:
            row = await session.get(Service, service_id)
        return row is None and not containers(docker_clients, service_id)

    await eventually(gone, deadline=60, what="service and its containers removed")


async def _service_id(db: Database, name: str) -> str:
    """The database id of the service (its containers carry it as a label)."""
    async with db.session() as session:
        found = await session.execute(select(Service.id).where(Service.name == name))
        return str(found.scalar_one())
