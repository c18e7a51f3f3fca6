"""A grid secret reaches the real container as an env var, and an updated value after a redeploy.

Same setup as tests/e2e/test_deploy.py: the API in the test's loop, a real Dramatiq worker, a
real agent on a real Docker daemon. Assertions never echo the secret's value.
"""

from __future__ import annotations

from typing import Any

import docker
import dramatiq
import httpx
import pytest

from models.db import Database
from tests.conftest import Caller
from tests.e2e import test_deploy
from tests.e2e.test_deploy import GRID, _service_id, deployed
from tests.e2e.test_real_nodes import Agents, eventually, online

pytestmark = pytest.mark.slow

# test_deploy's fixtures: the Redis-RPC runtime, the in-process worker, the agent processes.
runtime = test_deploy.runtime
worker = test_deploy.worker
agents = test_deploy.agents

SERVICE = "app"
FIRST = "s3cr3t-first-value"
SECOND = "s3cr3t-second-value"


def service_container(client: docker.DockerClient, service_id: str) -> tuple[str, list[str]]:
    """The (single) container of the service on the daemon: (id, Config.Env)."""
    found = client.containers.list(filters={"label": f"io.kontena.service.id={service_id}"})
    assert len(found) == 1, [c.name for c in found]
    return found[0].id, list(found[0].attrs["Config"]["Env"] or [])


def holds(env: list[str], value: str) -> bool:
    """Does ``env`` set DB_PASSWORD to exactly ``value``? (a bool: nothing to echo)."""
    return f"DB_PASSWORD={value}" in env


async def deploy(client: httpx.AsyncClient, admin: Caller) -> dict[str, Any]:
    """POST deploy and wait for it to finish."""
    response = await client.post(
        f"/v1/services/{GRID}/null/{SERVICE}/deploy", json={}, headers=admin.headers
    )
    assert response.status_code == 200, response.status_code
    return await deployed(client, admin, SERVICE, response.json())


async def test_a_secret_is_an_env_var_in_the_real_container_and_updates_after_redeploy(
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
    agents.start(
        "node-1", docker_hosts[0], KONTENA_TOKEN=grid.json()["token"], KONTENA_POD_SYNC_INTERVAL="5"
    )
    await eventually(online(client, admin, "node-1"), deadline=30, what="node online")

    created = await client.post(
        f"/v1/grids/{GRID}/secrets",
        json={"name": "db-password", "value": FIRST},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.status_code
    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": SERVICE,
            "image": busybox_image,
            "stateful": False,
            "cmd": ["sleep", "3600"],
            "secrets": [{"secret": "db-password", "name": "DB_PASSWORD", "type": "env"}],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text

    result = await deploy(client, admin)
    assert result["state"] == "success", result
    service_id = await _service_id(db, SERVICE)
    first_id, env = service_container(docker_clients[0], service_id)
    assert holds(env, FIRST), "the container's DB_PASSWORD is not the secret's value"

    updated = await client.put(
        f"/v1/secrets/{GRID}/db-password", json={"value": SECOND}, headers=admin.headers
    )
    assert updated.status_code == 200, updated.status_code

    result = await deploy(client, admin)
    assert result["state"] == "success", result
    second_id, env = service_container(docker_clients[0], service_id)
    assert second_id != first_id, "the container was not recreated after the secret changed"
    assert holds(env, SECOND), "the container's DB_PASSWORD is not the updated value"
    assert not holds(env, FIRST)
