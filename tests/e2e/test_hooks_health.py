"""Hooks and health checks end to end: the API, a real worker, two real agents on two real daemons.

Hooks: start hooks run in every new container, a oneshot hook only once per instance even after
both agents restarted and the service was re-deployed with ``force`` (the master keeps the
record), pre_stop runs before a stop, and a failing pre_start fails the deploy with a reason.
Health: deploys wait until the instances are healthy (Kontena #2770), the service JSON counts
them, and a service whose check never passes ends ``error`` naming the instance and its node,
while its agent restarts the unhealthy container. The containers are removed by the docker
fixtures' cleanup after the agents stopped.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select

from models import Service
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, HTTPD, _service_id, agents, runtime
from tests.e2e.test_real_nodes import Agents, eventually, nodes_by_name, online
from tests.e2e.test_service_lifecycle import (
    StartWorker,
    act,
    create,
    deploy,
    docker_state,
    in_docker,
    start_worker,
    two_nodes,
)

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime", "start_worker"]  # fixtures shared with test_deploy

HOOK_LOG = "/tmp/hooks.log"  # inside the service's containers


def container_file(client: docker.DockerClient, container_id: str, path: str) -> list[str]:
    """The lines of ``path`` inside a container (running or stopped)."""
    stream, _ = client.api.get_archive(container_id, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.extractfile(archive.getmembers()[0])
        assert member is not None
        return member.read().decode().split()


def hook_log(clients: list[docker.DockerClient], container: dict[str, Any]) -> list[str]:
    """The hook log of one container found by ``in_docker``."""
    return container_file(clients[container["daemon"]], container["id"], HOOK_LOG)


async def restart_agents(
    client: httpx.AsyncClient, admin: Caller, agents: Agents, docker_hosts: list[str]
) -> None:
    """Kill both agents (their in-memory oneshot records go with them) and start new ones."""
    token = (await client.get(f"/v1/grids/{GRID}", headers=admin.headers)).json()["token"]
    agents.stop_all()

    async def both_offline() -> bool:
        nodes = await nodes_by_name(client, admin)
        return all(nodes[name]["status"] != "online" for name in ("node-1", "node-2"))

    await eventually(both_offline, deadline=30, what="the killed agents' nodes offline")
    for index, zone in enumerate(("a", "b")):
        agents.start(
            f"node-{index + 1}",
            docker_hosts[index],
            KONTENA_TOKEN=token,
            KONTENA_NODE_LABELS=f"az={zone}",
            KONTENA_POD_SYNC_INTERVAL="5",
        )
    await eventually(online(client, admin, "node-1", "node-2"), deadline=30, what="nodes online")


async def test_hooks_run_around_starts_and_stops_and_oneshot_hooks_only_once(
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
            "name": "hooked",
            "image": busybox_image,
            "stateful": False,
            "instances": 2,
            "cmd": ["sleep", "3600"],
            "hooks": {
                # Runs in a throw-away container with the service's env: a wrong one fails it.
                "pre_start": [
                    {"name": "env", "cmd": 'test -n "$KONTENA_SERVICE_ID"', "instances": "*"}
                ],
                "post_start": [
                    {"name": "announce", "cmd": f"echo post_start >> {HOOK_LOG}", "instances": "*"},
                    {
                        "name": "init",
                        "cmd": f"echo once >> {HOOK_LOG}",
                        "instances": "*",
                        "oneshot": True,
                    },
                ],
                "pre_stop": [
                    {"name": "drain", "cmd": f"echo pre_stop >> {HOOK_LOG}", "instances": "1,2"}
                ],
            },
        },
    )
    service_id = await _service_id(db, "hooked")
    result = await deploy(client, admin, "hooked")
    assert result["state"] == "success", (result["reason"], result["instance_deploys"])
    first = in_docker(docker_clients, service_id)
    assert [c["name"] for c in first] == ["hooked-1", "hooked-2"]
    for container in first:
        assert hook_log(docker_clients, container) == ["post_start", "once"]
    async with db.session() as session:
        query = select(Service.spec).where(Service.id == service_id)
        spec = (await session.execute(query)).scalar_one()
    assert {h["name"]: sorted(h["done"]) for h in spec["hooks"]} == {
        "env": [],
        "announce": [],
        "init": [1, 2],
        "drain": [],
    }

    # New agents know nothing; the master leaves the oneshot hook out of their pods.
    await restart_agents(client, admin, agents, docker_hosts)
    result = await deploy(client, admin, "hooked", body={"force": True})
    assert result["state"] == "success", (result["reason"], result["instance_deploys"])
    second = in_docker(docker_clients, service_id)
    assert {c["id"] for c in second}.isdisjoint({c["id"] for c in first})  # re-created
    for container in second:
        assert hook_log(docker_clients, container) == ["post_start"]

    await act(client, admin, "hooked", "stop")

    def all_exited(found: list[dict[str, Any]]) -> bool:
        return bool(found) and all(c["status"] == "exited" for c in found)

    stopped = await eventually(
        docker_state(docker_clients, service_id, all_exited),
        deadline=30,
        what="containers stopped",
    )
    for container in stopped:
        assert hook_log(docker_clients, container) == ["post_start", "pre_stop"]

    # A pre_start hook that fails: no container, the deploy says which hook and exit code.
    await create(
        client,
        admin,
        {
            "name": "unprepared",
            "image": busybox_image,
            "stateful": False,
            "cmd": ["sleep", "3600"],
            "hooks": {"pre_start": [{"name": "migrate", "cmd": "exit 3", "instances": "*"}]},
        },
    )
    result = await deploy(client, admin, "unprepared")
    assert result["state"] == "error", result
    node = result["instance_deploys"][0]["node"]
    assert result["reason"] == (
        f"halting deploy of {GRID}/null/unprepared, one or more instances failed: "
        f"unprepared-1 on node {node}: pre_start hook migrate failed: exit code 3"
    )
    assert in_docker(docker_clients, await _service_id(db, "unprepared")) == []


async def test_deploys_wait_for_health_and_unhealthy_containers_are_restarted(
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
    check = {"protocol": "http", "port": 8080, "uri": "/", "interval": 1, "timeout": 1}
    check["initial_delay"] = 1
    web = {"image": busybox_image, "stateful": False, "instances": 2, "cmd": ["sh", "-c", HTTPD]}
    await create(client, admin, {**web, "name": "healthy", "health_check": check})

    started = time.monotonic()
    result = await deploy(client, admin, "healthy")
    print(f"\n2 health-checked instances, one at a time: {time.monotonic() - started:.2f} s")
    assert result["state"] == "success", (result["reason"], result["instance_deploys"])
    body = (await client.get(f"/v1/services/{GRID}/null/healthy", headers=admin.headers)).json()
    assert body["health_status"] == {"healthy": 2, "unhealthy": 0, "total": 2}
    assert body["health_check"]["uri"] == "/"

    # The check asks for a page httpd does not have: the first instance halts the deploy.
    await create(
        client, admin, {**web, "name": "sick", "health_check": {**check, "uri": "/missing"}}
    )
    started = time.monotonic()
    result = await deploy(client, admin, "sick")
    print(f"never-healthy deploy failed after {time.monotonic() - started:.2f} s")
    assert result["state"] == "error", result
    failed = result["instance_deploys"][0]
    assert (failed["instance_number"], failed["state"]) == (1, "error")
    prefix = (
        f"halting deploy of {GRID}/null/sick, one or more instances failed: "
        f"sick-1 on node {failed['node']}: Service instance is unhealthy: GET http://"
    )
    assert result["reason"].startswith(prefix), result["reason"]
    assert result["reason"].endswith(":8080/missing answered 404")
    assert len(result["instance_deploys"]) == 1  # the second instance was never touched

    service_id = await _service_id(db, "sick")
    (sick,) = in_docker(docker_clients, service_id)

    async def restarted() -> bool:
        (now,) = in_docker(docker_clients, service_id)
        return bool(now["id"] == sick["id"] and now["started_at"] != sick["started_at"])

    await eventually(restarted, deadline=30, what="the unhealthy container restarted")
    body = (await client.get(f"/v1/services/{GRID}/null/sick", headers=admin.headers)).json()
    assert body["health_status"]["healthy"] == 0
