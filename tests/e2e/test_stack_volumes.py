"""[F4] "Done when" (stack volumes), end to end: two real agents on two real Docker daemons.

A stack maps two local volume names to grid volumes (``external``), one ``stack``-scoped and
one ``instance``-scoped; its two instances write to both at start. The Docker volumes are named
as on Kontena (§5.3), a forced redeploy recreates the containers on the same nodes and the data
written before is still there; after the stack is deleted the volumes can be deleted and leave
the nodes.
"""

from __future__ import annotations

from typing import Any

import docker
import httpx
import pytest

from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, agents, runtime
from tests.e2e.test_real_nodes import Agents, eventually
from tests.e2e.test_service_lifecycle import (
    StartWorker,
    docker_state,
    in_docker,
    start_worker,
    two_nodes,
)
from tests.e2e.test_stack_lifecycle import deploy_stack, service_ids
from tests.e2e.test_volumes import docker_volume

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime", "start_worker"]  # fixtures shared with the other e2e tests

# Every start appends a line to both volumes: two lines in each after one recreate.
BOOT = (
    "echo boot-$KONTENA_SERVICE_INSTANCE_NUMBER >> /stack/boots"
    " && echo boot-$KONTENA_SERVICE_INSTANCE_NUMBER >> /inst/boots"
    " && exec sleep 600"
)
# Local names differ from the grid volumes': the Docker names must use the grid volume's name.
STACK_VOLUME, INSTANCE_VOLUME = "shared-data", "own-data"


def stack_body(busybox_image: str) -> dict[str, Any]:
    """Stack ``shop``: service ``app`` (2 instances) mounts ``shared`` and ``own``."""
    return {
        "name": "shop",
        "stack": "test/shop",
        "version": "1.0.0",
        "source": "services: ...",
        "volumes": [
            {"name": "shared", "external": STACK_VOLUME},
            {"name": "own", "external": INSTANCE_VOLUME},
        ],
        "services": [
            {
                "name": "app",
                "image": busybox_image,
                "stateful": False,
                "instances": 2,
                "cmd": ["/bin/sh", "-c", BOOT],
                "volumes": ["shared:/stack", "own:/inst"],
            }
        ],
    }


def lines(clients: list[docker.DockerClient], container: dict[str, Any], path: str) -> list[str]:
    """The lines of the file ``path``, read inside the container."""
    found = clients[container["daemon"]].containers.get(container["id"])
    code, output = found.exec_run(["cat", path])
    assert code == 0, output
    return output.decode().split()


def expected_volumes(number: str) -> list[str]:
    """Reference §5.3: ``<stack>.<volume>`` and ``<stack>.<service>.<volume>-<n>``."""
    return [f"shop.{STACK_VOLUME}", f"shop.app.{INSTANCE_VOLUME}-{number}"]


async def force_deploy(client: httpx.AsyncClient, admin: Caller) -> dict[str, Any]:
    """Force-deploy the stack's service (every instance recreated) and wait for it to finish."""
    base = f"/v1/services/{GRID}/shop/app"
    response = await client.post(f"{base}/deploy", json={"force": True}, headers=admin.headers)
    assert response.status_code == 200, response.text
    url = f"{base}/deploys/{response.json()['id']}"

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(url, headers=admin.headers)).json()
        return body if body["state"] in ("success", "error") else None

    result: dict[str, Any] = await eventually(
        finished, deadline=120, what="the forced deploy finished", interval=0.1
    )
    return result


async def test_stack_volumes_keep_data_across_a_forced_redeploy(
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
    for name, scope in ((STACK_VOLUME, "stack"), (INSTANCE_VOLUME, "instance")):
        created = await client.post(
            f"/v1/volumes/{GRID}", json={"name": name, "scope": scope, "driver": "local"}, headers=h
        )
        assert created.status_code == 201, created.text
    created = await client.post(
        f"/v1/grids/{GRID}/stacks", json=stack_body(busybox_image), headers=h
    )
    assert created.status_code == 201, created.text

    result = await deploy_stack(client, admin)
    assert result["state"] == "success", result
    service_id = (await service_ids(db))["app"]
    first = in_docker(docker_clients, service_id)
    assert [(c["name"], c["status"]) for c in first] == [
        ("shop.app-1", "running"),
        ("shop.app-2", "running"),
    ]
    assert {c["daemon"] for c in first} == {0, 1}  # ha: one per node
    for container in first:
        number = container["name"][-1]
        daemon = container["daemon"]
        for name, grid_volume in zip(
            expected_volumes(number), (STACK_VOLUME, INSTANCE_VOLUME), strict=True
        ):
            volume = docker_volume(docker_clients, daemon, name)
            assert volume is not None, f"no Docker volume {name} next to {container}"
            assert volume.attrs["Labels"]["io.kontena.volume.id"] == f"{GRID}/{grid_volume}"
        # The instance volume lives only with its instance; each node has its own stack volume.
        other = 1 - daemon
        assert docker_volume(docker_clients, other, f"shop.app.{INSTANCE_VOLUME}-{number}") is None
        attrs = docker_clients[daemon].containers.get(container["id"]).attrs
        mounts = sorted((m["Name"], m["Destination"]) for m in attrs["Mounts"])
        assert mounts == sorted(zip(expected_volumes(number), ("/stack", "/inst"), strict=True))
        assert lines(docker_clients, container, "/stack/boots") == [f"boot-{number}"]
        assert lines(docker_clients, container, "/inst/boots") == [f"boot-{number}"]

    for name, scope in ((STACK_VOLUME, "stack"), (INSTANCE_VOLUME, "instance")):
        shown = (await client.get(f"/v1/volumes/{GRID}/{name}", headers=h)).json()
        assert shown["services"] == [{"id": f"{GRID}/shop/app"}]
        names = sorted(i["name"] for i in shown["instances"])
        if scope == "stack":
            assert names == [f"shop.{name}", f"shop.{name}"]  # one per node
        else:
            assert names == [f"shop.app.{name}-1", f"shop.app.{name}-2"]

    # Forced: every container recreated, on the node holding its data, which is still there.
    result = await force_deploy(client, admin)
    assert result["state"] == "success", result
    second = in_docker(docker_clients, service_id)
    assert [c["status"] for c in second] == ["running", "running"]
    for before, after in zip(first, second, strict=True):
        assert after["id"] != before["id"]  # recreated
        assert after["daemon"] == before["daemon"]  # stayed with its volumes
        number = after["name"][-1]
        assert lines(docker_clients, after, "/stack/boots") == [f"boot-{number}"] * 2
        assert lines(docker_clients, after, "/inst/boots") == [f"boot-{number}"] * 2

    # In use by the stack: refused. After the stack is gone: deleted, and gone from the nodes.
    refused = await client.delete(f"/v1/volumes/{GRID}/{STACK_VOLUME}", headers=h)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {STACK_VOLUME: f'Volume still in use in services ["{GRID}/shop/app"]'}},
    )
    removed = await client.delete(f"/v1/stacks/{GRID}/shop", headers=h)
    assert removed.status_code == 200, removed.text
    await eventually(
        docker_state(docker_clients, service_id, lambda found: not found),
        deadline=60,
        what="the containers removed",
    )

    async def volumes_deleted() -> bool:
        for name in (STACK_VOLUME, INSTANCE_VOLUME):
            response = await client.delete(f"/v1/volumes/{GRID}/{name}", headers=h)
            # 422 until the removal job deleted the service; 404 once this loop deleted it.
            if response.status_code not in (200, 404):
                return False
        return True

    await eventually(volumes_deleted, deadline=30, what="the volumes deleted")

    async def docker_volumes_gone() -> bool:
        return all(
            docker_volume(docker_clients, c["daemon"], name) is None
            for c in first
            for name in expected_volumes(c["name"][-1])
        )

    await eventually(docker_volumes_gone, deadline=30, what="the Docker volumes removed")
