"""[F4] "Done when" (stacks), end to end: two real agents on two real Docker daemons.

A stack of two linked services (a busybox web server linking to a busybox TCP service) deploys
in link order; a new revision that drops the web server removes its containers on deploy;
restart, stop and delete are checked in Docker.
"""

from __future__ import annotations

from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select

from models import Service
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, HTTPD, agents, http_get, runtime
from tests.e2e.test_real_nodes import Agents, eventually
from tests.e2e.test_service_lifecycle import (
    StartWorker,
    docker_state,
    in_docker,
    start_worker,
    two_nodes,
)

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime", "start_worker"]  # fixtures shared with the service e2e tests

# A TCP service: answers "pong" to every connection on port 9000.
TCP_SERVER = "while true; do echo pong | nc -l -p 9000; done"


def stack_body(busybox_image: str, *, with_web: bool = True) -> dict[str, Any]:
    """Stack ``shop``: ``web`` (httpd on 8080) links to ``db`` (nc on 9000)."""
    db = {
        "name": "db",
        "image": busybox_image,
        "stateful": False,
        "cmd": ["/bin/sh", "-c", TCP_SERVER],
    }
    web = {
        "name": "web",
        "image": busybox_image,
        "stateful": False,
        "cmd": ["/bin/sh", "-c", HTTPD],
        "links": [{"name": "db", "alias": "db"}],
        # node_port 0: Docker picks a free host port, since both daemons share 127.0.0.1.
        "ports": [{"node_port": 0, "container_port": 8080, "ip": "127.0.0.1"}],
    }
    return {
        "name": "shop",
        "stack": "test/shop",
        "version": "1.0.0" if with_web else "1.1.0",
        "source": "services: ...",
        "expose": "web" if with_web else None,
        # Listed web first: the order of deploys comes from the links, not from the list.
        "services": [web, db] if with_web else [db],
    }


async def deploy_stack(client: httpx.AsyncClient, admin: Caller) -> dict[str, Any]:
    """POST …/deploy, check it is visible in ``created`` at once, wait for it to finish."""
    response = await client.post(f"/v1/stacks/{GRID}/shop/deploy", headers=admin.headers)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["state"] == "created" and created["service_deploys"] == []
    url = f"/v1/stacks/{GRID}/shop/deploys/{created['id']}"

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(url, headers=admin.headers)).json()
        return body if body["state"] in ("success", "error") else None

    result: dict[str, Any] = await eventually(
        finished, deadline=120, what="the stack deploy finished", interval=0.1
    )
    return result


async def service_ids(db: Database) -> dict[str, str]:
    """Ids of the stack's services by name."""
    async with db.session() as session:
        rows = await session.execute(
            select(Service.name, Service.id).where(Service.stack == "shop")
        )
        return {row.name: row.id for row in rows}


async def test_a_stack_lives_its_whole_life_in_real_docker(
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
    created = await client.post(
        f"/v1/grids/{GRID}/stacks", json=stack_body(busybox_image), headers=admin.headers
    )
    assert created.status_code == 201, created.text

    result = await deploy_stack(client, admin)
    assert result["state"] == "success", result
    first, second = result["service_deploys"]
    # Link order: db (the link target) deployed first, web only after db's deploy finished.
    assert (first["service_id"], second["service_id"]) == (f"{GRID}/shop/db", f"{GRID}/shop/web")
    assert first["state"] == second["state"] == "success"
    assert first["finished_at"] <= second["started_at"]
    ids = await service_ids(db)
    db_found = in_docker(docker_clients, ids["db"])
    web_found = in_docker(docker_clients, ids["web"])
    assert [(c["name"], c["status"]) for c in db_found] == [("shop.db-1", "running")]
    assert [(c["name"], c["status"]) for c in web_found] == [("shop.web-1", "running")]
    assert http_get(web_found[0]["port"]) == "hello-1"
    stack = (await client.get(f"/v1/stacks/{GRID}/shop", headers=admin.headers)).json()
    assert stack["state"] == "running"

    # Revision 2 drops web: deploying it removes web's container, db keeps running.
    updated = await client.put(
        f"/v1/stacks/{GRID}/shop",
        json=stack_body(busybox_image, with_web=False),
        headers=admin.headers,
    )
    assert updated.status_code == 200 and updated.json()["revision"] == 2, updated.text
    result = await deploy_stack(client, admin)
    assert result["state"] == "success", result
    assert [d["service_id"] for d in result["service_deploys"]] == [f"{GRID}/shop/db"]
    await eventually(
        docker_state(docker_clients, ids["web"], lambda found: not found),
        deadline=30,
        what="web's container removed",
    )
    assert await service_ids(db) == {"db": ids["db"]}
    before = in_docker(docker_clients, ids["db"])
    assert [c["status"] for c in before] == ["running"]

    restarted = await client.post(f"/v1/stacks/{GRID}/shop/restart", headers=admin.headers)
    assert restarted.status_code == 200, restarted.text
    await eventually(
        docker_state(
            docker_clients,
            ids["db"],
            lambda found: (
                len(found) == 1
                and found[0]["status"] == "running"
                and found[0]["started_at"] != before[0]["started_at"]
            ),
        ),
        deadline=30,
        what="db restarted",
    )

    stopped = await client.post(f"/v1/stacks/{GRID}/shop/stop", headers=admin.headers)
    assert stopped.status_code == 200, stopped.text
    await eventually(
        docker_state(docker_clients, ids["db"], lambda f: [c["status"] for c in f] == ["exited"]),
        deadline=30,
        what="db stopped",
    )
    stack = (await client.get(f"/v1/stacks/{GRID}/shop", headers=admin.headers)).json()
    assert stack["state"] == "stopped"

    removed = await client.delete(f"/v1/stacks/{GRID}/shop", headers=admin.headers)
    assert removed.status_code == 200, removed.text
    await eventually(
        docker_state(docker_clients, ids["db"], lambda found: not found),
        deadline=60,
        what="db's container removed",
    )

    async def stack_gone() -> bool:
        response = await client.get(f"/v1/stacks/{GRID}/shop", headers=admin.headers)
        return response.status_code == 404 and not await service_ids(db)

    await eventually(stack_gone, deadline=30, what="the stack and its services gone")
