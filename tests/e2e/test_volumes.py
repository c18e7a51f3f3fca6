"""[F4] volumes, end to end: real agents on two real Docker daemons, checked in Docker.

A service with an instance-scoped volume: each instance gets its own Docker volume, named as
Kontena named it, on its node; data written survives a redeploy that recreates the containers;
each instance stays on the node holding its volume; deleting the unused volume removes the
Docker volumes from the nodes.
"""

from __future__ import annotations

from typing import Any

import docker
import httpx
import pytest

from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, _service_id, agents, runtime
from tests.e2e.test_real_nodes import Agents, eventually
from tests.e2e.test_service_lifecycle import (
    StartWorker,
    deploy,
    docker_state,
    in_docker,
    start_worker,
    two_nodes,
)

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime", "start_worker"]  # fixtures shared with the other e2e tests

# Every start appends a line to the volume: two lines after one recreate.
BOOT = "echo boot-$KONTENA_SERVICE_INSTANCE_NUMBER >> /data/boots && exec sleep 600"


def boots(clients: list[docker.DockerClient], container: dict[str, Any]) -> list[str]:
    """The lines the instance wrote into its volume, read inside its container."""
    found = clients[container["daemon"]].containers.get(container["id"])
    code, output = found.exec_run(["cat", "/data/boots"])
    assert code == 0, output
    return output.decode().split()


def docker_volume(clients: list[docker.DockerClient], daemon: int, name: str) -> Any:
    """The Docker volume ``name`` on a daemon, or None."""
    try:
        return clients[daemon].volumes.get(name)
    except docker.errors.NotFound:
        return None


async def test_instance_volumes_keep_data_and_instances_across_redeploys(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    h = admin.headers
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    created = await client.post(
        f"/v1/volumes/{GRID}",
        json={"name": "data", "scope": "instance", "driver": "local"},
        headers=h,
    )
    assert created.status_code == 201, created.text
    service = {
        "name": "store",
        "image": busybox_image,
        "stateful": False,
        "instances": 2,
        "cmd": ["/bin/sh", "-c", BOOT],
        "volumes": ["data:/data"],
    }
    made = await client.post(f"/v1/grids/{GRID}/services", json=service, headers=h)
    assert made.status_code == 201, made.text

    result = await deploy(client, admin, "store")
    assert result["state"] == "success", result
    service_id = await _service_id(db, "store")
    first = in_docker(docker_clients, service_id)
    assert [(c["name"], c["status"]) for c in first] == [
        ("store-1", "running"),
        ("store-2", "running"),
    ]
    assert {c["daemon"] for c in first} == {0, 1}  # ha: one per node
    for container in first:
        number = container["name"][-1]
        volume = docker_volume(docker_clients, container["daemon"], f"store.data-{number}")
        assert volume is not None, f"no Docker volume store.data-{number} next to {container}"
        assert volume.attrs["Driver"] == "local"
        assert volume.attrs["Labels"]["io.kontena.volume.id"] == f"{GRID}/data"
        other = 1 - container["daemon"]
        assert docker_volume(docker_clients, other, f"store.data-{number}") is None
        mounts = docker_clients[container["daemon"]].containers.get(container["id"]).attrs
        assert [m["Name"] for m in mounts["Mounts"]] == [f"store.data-{number}"]
        assert boots(docker_clients, container) == [f"boot-{number}"]

    shown = (await client.get(f"/v1/volumes/{GRID}/data", headers=h)).json()
    assert sorted(i["name"] for i in shown["instances"]) == ["store.data-1", "store.data-2"]
    assert shown["services"] == [{"id": f"{GRID}/null/store"}]

    # A changed service is recreated on deploy: new containers, same volumes, same nodes.
    changed = await client.put(
        f"/v1/services/{GRID}/null/store", json={"env": ["CHANGED=1"]}, headers=h
    )
    assert changed.status_code == 200, changed.text
    result = await deploy(client, admin, "store")
    assert result["state"] == "success", result
    second = in_docker(docker_clients, service_id)
    assert [c["status"] for c in second] == ["running", "running"]
    for before, after in zip(first, second, strict=True):
        assert after["id"] != before["id"]  # recreated
        assert after["daemon"] == before["daemon"]  # stayed with its volume
        number = after["name"][-1]
        assert boots(docker_clients, after) == [f"boot-{number}", f"boot-{number}"]

    # In use: refused, naming the service. Unused: deleted, and gone from the nodes.
    refused = await client.delete(f"/v1/volumes/{GRID}/data", headers=h)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {"data": f'Volume still in use in services ["{GRID}/null/store"]'}},
    )
    removed = await client.delete(f"/v1/services/{GRID}/null/store", headers=h)
    assert removed.status_code == 200, removed.text
    await eventually(
        docker_state(docker_clients, service_id, lambda f: not f),
        deadline=60,
        what="the containers removed",
    )

    async def volume_deleted() -> bool:
        response = await client.delete(f"/v1/volumes/{GRID}/data", headers=h)
        return response.status_code == 200  # 422 until the removal job deleted the service

    await eventually(volume_deleted, deadline=30, what="the volume deleted")

    async def docker_volumes_gone() -> bool:
        return all(
            docker_volume(docker_clients, c["daemon"], f"store.data-{c['name'][-1]}") is None
            for c in first
        )

    await eventually(docker_volumes_gone, deadline=30, what="the Docker volumes removed")
