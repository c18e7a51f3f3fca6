"""[F3] "Done when", end to end: two real agents on two real Docker daemons, checked in Docker.

A service's whole life (deploy, scale, stop, start, restart, env change, delete); deploys that
fail with a reason a human can act on (bad image, unmatched affinity, taken port, dead agent);
and a worker SIGKILLed in the middle of a deploy, whose successor finishes it without duplicates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import dramatiq
import httpx
import msgspec
import pytest
from sqlalchemy import update

from core.config import Settings
from core.jobs import Job
from core.runtime import Runtime
from models import ServiceDeploy
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_deploy import (
    GRID,
    HTTPD,
    _service_id,
    agents,
    deployed,
    http_get,
    runtime,
)
from tests.e2e.test_real_nodes import Agents, eventually, online
from tests.fixtures.server import free_port
from tests.workers.test_run import SCRIPT
from workers.actors import load_actors
from workers.broker import build_broker
from workers.maintenance import RECOVER
from workers.run import start_in_process_worker

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime"]  # fixtures shared with test_deploy

Popen = subprocess.Popen[bytes]
ROOT = Path(__file__).resolve().parents[2]
StartWorker = Callable[..., dramatiq.Worker]


@pytest.fixture
def start_worker(settings: Settings, runtime: Runtime) -> Iterator[StartWorker]:
    """Start an in-process Dramatiq worker on Redis, with settings overridden as given."""
    started: list[tuple[dramatiq.Worker, dramatiq.Broker]] = []

    def start(**overrides: Any) -> dramatiq.Worker:
        broker = build_broker(msgspec.structs.replace(settings, **overrides))
        load_actors(broker)
        worker = start_in_process_worker(broker, 4)
        started.append((worker, broker))
        return worker

    yield start
    for worker, broker in started:
        worker.stop(timeout=10_000)
        broker.close()
    build_broker(settings)  # later tests' workers see the default settings again


@pytest.fixture
def worker_processes() -> Iterator[list[Popen]]:
    """`kontena-master worker` processes of the test; survivors are killed by pid."""
    started: list[Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def two_nodes(
    client: httpx.AsyncClient, admin: Caller, agents: Agents, docker_hosts: list[str]
) -> None:
    """The grid and one agent per Docker daemon (az a and b), both online."""
    grid = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    for index, zone in enumerate(("a", "b")):
        agents.start(
            f"node-{index + 1}",
            docker_hosts[index],
            KONTENA_TOKEN=grid.json()["token"],
            KONTENA_NODE_LABELS=f"az={zone}",
            KONTENA_POD_SYNC_INTERVAL="5",
        )
    await eventually(online(client, admin, "node-1", "node-2"), deadline=30, what="nodes online")


async def create(client: httpx.AsyncClient, admin: Caller, body: dict[str, Any]) -> None:
    """Create a stack-less service."""
    created = await client.post(f"/v1/grids/{GRID}/services", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text


async def act(
    client: httpx.AsyncClient, admin: Caller, service: str, action: str, body: Any = None
) -> dict[str, Any]:
    """POST an action of the service; answers its body."""
    response = await client.post(
        f"/v1/services/{GRID}/null/{service}/{action}", json=body or {}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def deploy(
    client: httpx.AsyncClient, admin: Caller, service: str, action: str = "deploy", body: Any = None
) -> dict[str, Any]:
    """Deploy (or scale) and wait for the deploy to finish."""
    return await deployed(client, admin, service, await act(client, admin, service, action, body))


def in_docker(clients: list[docker.DockerClient], service_id: str) -> list[dict[str, Any]]:
    """Every container of the service on both daemons, running or not."""
    found = []
    for index, client in enumerate(clients):
        for container in client.containers.list(
            all=True,
            filters={"label": f"io.kontena.service.id={service_id}"},
            ignore_removed=True,  # a container the agent removes meanwhile is just gone
        ):
            ports = container.attrs["NetworkSettings"]["Ports"] or {}
            bound = ports.get("8080/tcp") or []
            found.append(
                {
                    "name": container.name,
                    "daemon": index,
                    "id": container.id,
                    "status": container.status,
                    "started_at": container.attrs["State"]["StartedAt"],
                    "env": container.attrs["Config"]["Env"] or [],
                    "port": int(bound[0]["HostPort"]) if bound else None,
                }
            )
    return sorted(found, key=lambda c: c["name"])


def docker_state(
    clients: list[docker.DockerClient],
    service_id: str,
    check: Callable[[list[dict[str, Any]]], bool],
) -> Callable[[], Any]:
    """An eventually() check: the service's containers as soon as ``check`` holds for them."""

    async def poll() -> Any:
        found = in_docker(clients, service_id)
        # eventually() wants something truthy: "no containers" is answered as True.
        return (found or True) if check(found) else None

    return poll


async def test_a_service_lives_its_whole_life_in_real_docker(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    await create(
        client,
        admin,
        {
            "name": "life",
            "image": busybox_image,
            "stateful": False,
            "instances": 3,
            "cmd": ["/bin/sh", "-c", HTTPD],
            # node_port 0: Docker picks a free host port, since both daemons share 127.0.0.1.
            "ports": [{"node_port": 0, "container_port": 8080, "ip": "127.0.0.1"}],
        },
    )
    result = await deploy(client, admin, "life")
    assert result["state"] == "success", result
    service_id = await _service_id(db, "life")

    found = in_docker(docker_clients, service_id)
    assert [(c["name"], c["status"]) for c in found] == [
        ("life-1", "running"),
        ("life-2", "running"),
        ("life-3", "running"),
    ]
    assert {c["daemon"] for c in found} == {0, 1}  # spread over both nodes
    for container in found:
        assert http_get(container["port"]) == f"hello-{container['name'][-1]}"

    result = await deploy(client, admin, "life", "scale", {"instances": 5})
    assert result["state"] == "success", result
    found = in_docker(docker_clients, service_id)
    assert [c["name"] for c in found if c["status"] == "running"] == [
        f"life-{n}" for n in range(1, 6)
    ]
    assert len(found) == 5

    result = await deploy(client, admin, "life", "scale", {"instances": 1})
    assert result["state"] == "success", result
    found = await eventually(
        docker_state(docker_clients, service_id, lambda f: len(f) == 1),
        deadline=30,
        what="scaled down to one container",
    )
    assert (found[0]["name"], found[0]["status"]) == ("life-1", "running")

    await act(client, admin, "life", "stop")
    await eventually(
        docker_state(docker_clients, service_id, lambda f: [c["status"] for c in f] == ["exited"]),
        deadline=30,
        what="the container stopped",
    )
    await act(client, admin, "life", "start")
    found = await eventually(
        docker_state(docker_clients, service_id, lambda f: [c["status"] for c in f] == ["running"]),
        deadline=30,
        what="the container started",
    )
    before = found[0]
    assert http_get(before["port"]) == "hello-1"

    await act(client, admin, "life", "restart")
    found = await eventually(
        docker_state(
            docker_clients,
            service_id,
            lambda f: (
                len(f) == 1
                and f[0]["status"] == "running"
                and f[0]["started_at"] != before["started_at"]
            ),
        ),
        deadline=30,
        what="the container restarted",
    )
    assert found[0]["id"] == before["id"]  # restarted, not recreated

    changed = await client.put(
        f"/v1/services/{GRID}/null/life", json={"env": ["GREETING=changed"]}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    result = await deploy(client, admin, "life")
    assert result["state"] == "success", result
    found = in_docker(docker_clients, service_id)
    assert len(found) == 1 and found[0]["status"] == "running"
    assert found[0]["id"] != before["id"]  # recreated
    assert "GREETING=changed" in found[0]["env"]

    removed = await client.delete(f"/v1/services/{GRID}/null/life", headers=admin.headers)
    assert removed.status_code == 200, removed.text
    await eventually(
        docker_state(docker_clients, service_id, lambda f: not f),
        deadline=60,
        what="the containers removed",
    )


async def test_failed_deploys_end_error_fast_with_a_reason(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
) -> None:
    # A small instance timeout: the dead agent's instance must end the deploy in seconds.
    start_worker(deploy_instance_timeout=6.0)
    await two_nodes(client, admin, agents, docker_hosts)
    simple = {"image": busybox_image, "stateful": False, "cmd": ["/bin/sh", "-c", HTTPD]}

    # An image that does not exist (a registry on a closed loopback port: fails at once).
    missing = "127.0.0.1:1/does-not-exist:1"
    await create(client, admin, {"name": "badimage", "image": missing, "stateful": False})
    result = await deploy(client, admin, "badimage")
    assert result["state"] == "error", result
    assert missing in result["reason"]
    assert "badimage-1 on node" in result["reason"]
    print(f"\nbad image: {result['reason']}")

    # An affinity no node matches: error within 5 s, naming the rule.
    await create(client, admin, {"name": "nowhere", **simple, "affinity": ["label==nowhere"]})
    started = time.monotonic()
    result = await deploy(client, admin, "nowhere")
    assert time.monotonic() - started < 5
    assert result["state"] == "error", result
    assert "label==nowhere" in result["reason"], result["reason"]
    assert "nowhere-1" in result["reason"]
    print(f"affinity: {result['reason']}")

    # A node port every node already uses: one holder per node (distinct loopback addresses,
    # since both daemons share this host's network), then a third service wants it too.
    port = free_port()
    for index in (1, 2):
        await create(
            client,
            admin,
            {
                "name": f"holder{index}",
                **simple,
                "affinity": [f"node==node-{index}"],
                "ports": [{"node_port": port, "container_port": 8080, "ip": f"127.0.0.{index}"}],
            },
        )
        result = await deploy(client, admin, f"holder{index}")
        assert result["state"] == "success", result
    await create(
        client,
        admin,
        {
            "name": "wantsport",
            **simple,
            "ports": [{"node_port": port, "container_port": 8080, "ip": "127.0.0.3"}],
        },
    )
    started = time.monotonic()
    result = await deploy(client, admin, "wantsport")
    assert time.monotonic() - started < 5
    assert result["state"] == "error", result
    assert str(port) in result["reason"] and "port" in result["reason"], result["reason"]
    assert "wantsport-1" in result["reason"]
    print(f"port: {result['reason']}")

    # An agent SIGKILLed mid-deploy: its instance (slow to open its port) never reports, so the
    # instance timeout ends the deploy `error` instead of a hang.
    await create(
        client,
        admin,
        {
            "name": "orphan",
            "image": busybox_image,
            "stateful": False,
            "affinity": ["node==node-2"],
            "cmd": ["/bin/sh", "-c", f"sleep 60; {HTTPD}"],
            "wait_for_port": 8080,
        },
    )
    created = await act(client, admin, "orphan", "deploy")
    url = f"/v1/services/{GRID}/null/orphan/deploys/{created['id']}"

    async def instance_sent() -> bool:
        body = (await client.get(url, headers=admin.headers)).json()
        return any(d["state"] == "ongoing" for d in body["instance_deploys"])

    await eventually(instance_sent, deadline=20, what="the instance sent to node-2")
    agents.procs["node-2"].kill()
    started = time.monotonic()
    result = await deployed(client, admin, "orphan", created)
    waited = time.monotonic() - started
    assert result["state"] == "error", result
    assert waited < 20, waited  # the 6 s instance timeout, not the 60 s sleep nor a hang
    assert "orphan-1 on node node-2" in result["reason"], result["reason"]
    print(f"dead agent after {waited:.1f} s: {result['reason']}")


async def test_a_deploy_survives_a_sigkilled_worker_without_duplicates(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    runtime: Runtime,
    settings: Settings,
    worker_processes: list[Popen],
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "KONTENA_DATABASE_URL": settings.resolved_database_url,
        "KONTENA_VAULT_KEY": settings.vault_key,
        "KONTENA_REDIS_URL": settings.redis_url,
        "KONTENA_RECOVERY_AFTER": "1",
    }

    def start(name: str) -> Popen:
        with (tmp_path / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, "1"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        worker_processes.append(process)
        return process

    first = start("worker-1")
    await two_nodes(client, admin, agents, docker_hosts)
    await create(
        client,
        admin,
        {
            "name": "many",
            "image": busybox_image,
            "stateful": False,
            "instances": 10,
            "cmd": ["/bin/sh", "-c", HTTPD],
            "deploy_opts": {"min_health": 0.9},  # floor(10 * 0.1) = 1: one at a time
        },
    )
    created = await act(client, admin, "many", "deploy")
    url = f"/v1/services/{GRID}/null/many/deploys/{created['id']}"

    async def some_done() -> bool:
        body = (await client.get(url, headers=admin.headers)).json()
        done = sum(d["state"] == "success" for d in body["instance_deploys"])
        return bool(done >= 3)

    await eventually(some_done, deadline=60, what="three instances deployed")
    first.kill()
    first.wait(timeout=10)
    body = (await client.get(url, headers=admin.headers)).json()
    assert body["state"] == "ongoing", body  # killed mid-deploy

    # The dead worker's 60 s lease runs out (made to have run out, to keep the test short);
    # the recovery tick of a new worker sends the deploy again and the new worker resumes it.
    async with db.session() as session:
        await session.execute(
            update(ServiceDeploy)
            .where(ServiceDeploy.id == created["id"])
            .values(lease_until=utcnow().replace(year=2000))
        )
        await session.commit()
    start("worker-2")
    runtime.sender.send(Job(RECOVER, "maintenance", kwargs={"slot": 1, "epoch": 1}))

    result = await deployed(client, admin, "many", created)
    assert result["state"] == "success", (result, (tmp_path / "worker-2.log").read_text())
    service_id = await _service_id(db, "many")
    found = in_docker(docker_clients, service_id)
    assert sorted(c["name"] for c in found) == sorted(f"many-{n}" for n in range(1, 11))
    assert all(c["status"] == "running" for c in found)
    assert {c["daemon"] for c in found} == {0, 1}
