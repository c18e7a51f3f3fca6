"""Stack deploy and removal jobs against the real database, with agents simulated in-process.

The node RPC is tests.core.deploy_support.SimulatedAgents (no socket, no Docker): the real pod
handlers answer, as in tests/core/test_deployer.py. Real agents on real Docker daemons are
covered by tests/e2e/test_stack_lifecycle.py.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core import work
from core.jobs import Job
from core.stack_deploy import must_wait, run_stack_deploy
from core.stack_jobs import StackEnv
from core.stack_removal import removal_order, run_stack_removal
from core.stack_spec import link_order
from core.stacks import derive_state
from core.vault import Vault
from models import Grid, Service, ServiceDeploy, Stack, StackDeploy, StackRemoval
from models.base import utcnow
from models.db import Database
from tests.core.deploy_support import SimulatedAgents, add_nodes, make_env

BODY: dict[str, Any] = {
    "name": "app",
    "stack": "user/app",
    "version": "1",
    "source": "",
    "services": [
        {
            "name": "web",
            "image": "local/busybox:latest",
            "stateful": False,
            "links": [{"name": "db", "alias": "db"}],
        },
        {"name": "db", "image": "local/busybox:latest", "stateful": False},
    ],
}


class RecordingSender:
    """Jobs a stack job sends (the service deploy jobs it also runs itself)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def send(self, job: Job) -> None:
        """Remember the job."""
        self.jobs.append(job)


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any, db: Database) -> Grid:
    """Grid ``main`` (through the API) with two connected simulated nodes."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    async with db.session() as session:
        row = (await session.execute(select(Grid).where(Grid.name == "main"))).scalar_one()
    await add_nodes(db, row, "node-1", "node-2")
    return row


@pytest.fixture
def env(db: Database, vault: Vault) -> StackEnv:
    """Simulated agents, short polls."""
    agents = SimulatedAgents(lambda: db, vault)
    return StackEnv(
        deploy=make_env(db, vault, agents), sender=RecordingSender(), poll_interval=0.02
    )


async def request_deploy(client: httpx.AsyncClient, admin: Any) -> str:
    """POST …/deploy; the stack deploy id."""
    response = await client.post("/v1/stacks/main/app/deploy", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "created"
    deploy_id: str = response.json()["id"]
    return deploy_id


async def stack_deploy(client: httpx.AsyncClient, admin: Any, deploy_id: str) -> dict[str, Any]:
    """GET the stack deploy."""
    response = await client.get(f"/v1/stacks/main/app/deploys/{deploy_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def service_names(db: Database) -> list[str]:
    """Names of the service rows that exist."""
    async with db.session() as session:
        return sorted((await session.execute(select(Service.name))).scalars())


async def test_services_deploy_one_by_one_in_link_order(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    deploy_id = await request_deploy(client, admin)
    assert await run_stack_deploy(env, deploy_id, 5)
    body = await stack_deploy(client, admin, deploy_id)
    assert body["state"] == "success", body
    assert body["reason"] is None and body["finished_at"] is not None
    deploys = body["service_deploys"]
    assert [d["service_id"] for d in deploys] == ["main/app/db", "main/app/web"]
    assert all(d["state"] == "success" for d in deploys)
    # Serial: web's deploy started only after db's finished.
    assert deploys[0]["finished_at"] <= deploys[1]["started_at"]
    stack = (await client.get("/v1/stacks/main/app", headers=admin.headers)).json()
    assert stack["state"] == "running"
    assert {s["instance_counts"]["running"] for s in stack["services"]} == {1}
    # A second delivery of the same job finds the deploy finished and does nothing.
    assert not await run_stack_deploy(env, deploy_id, 5)


async def test_a_revision_that_drops_a_service_removes_it_on_deploy(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    assert await run_stack_deploy(env, await request_deploy(client, admin), 5)
    smaller = copy.deepcopy(BODY)
    smaller["services"] = [smaller["services"][1]]
    response = await client.put("/v1/stacks/main/app", json=smaller, headers=admin.headers)
    assert response.status_code == 200 and response.json()["revision"] == 2
    assert await service_names(db) == ["db", "web"]  # dropped only when deployed
    deploy_id = await request_deploy(client, admin)
    assert await run_stack_deploy(env, deploy_id, 5)
    body = await stack_deploy(client, admin, deploy_id)
    assert body["state"] == "success", body
    assert [d["service_id"] for d in body["service_deploys"]] == ["main/app/db"]
    assert await service_names(db) == ["db"]


async def test_a_failed_service_stops_the_stack_deploy_with_a_reason_naming_it(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv
) -> None:
    broken = copy.deepcopy(BODY)
    broken["services"][1]["affinity"] = ["label==nowhere"]
    await client.post("/v1/grids/main/stacks", json=broken, headers=admin.headers)
    deploy_id = await request_deploy(client, admin)
    assert await run_stack_deploy(env, deploy_id, 5)
    body = await stack_deploy(client, admin, deploy_id)
    assert body["state"] == "error", body
    assert "service app/db deploy failed" in body["reason"]
    assert "label==nowhere" in body["reason"]
    # web (which links to db) was never deployed.
    assert [d["service_id"] for d in body["service_deploys"]] == ["main/app/db"]


async def test_removal_stops_and_removes_the_services_then_the_stack(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    assert await run_stack_deploy(env, await request_deploy(client, admin), 5)
    response = await client.delete("/v1/stacks/main/app", headers=admin.headers)
    assert response.status_code == 200
    async with db.session() as session:
        removal = (await session.execute(select(StackRemoval))).scalar_one()
    assert await run_stack_removal(env, removal.id, 5)
    assert await service_names(db) == []
    async with db.session() as session:
        assert (await session.execute(select(Stack))).first() is None
        assert (await session.execute(select(ServiceDeploy))).first() is None
        done = await session.get(StackRemoval, removal.id)
        assert done is not None and done.state == "success"
    # The name is free again.
    again = await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    assert again.status_code == 201, again.text


def test_link_order_puts_targets_first_and_keeps_the_given_order_otherwise() -> None:
    services = [
        {"name": "a", "links": [{"name": "c"}]},
        {"name": "b"},
        {"name": "c", "links": [{"name": "b"}, {"name": "other/x"}, {"name": "s/b"}]},
        {"name": "d"},
    ]
    assert link_order(services, "s") == (["b", "c", "a", "d"], {})
    order, errors = link_order([{"name": "a", "links": [{"name": "a"}]}], "s")
    assert order == [] and errors == {"a": {"links": "service a has recursive links: a -> a"}}


def test_removal_order_is_reverse_link_order() -> None:
    db_row = Service(id="1", name="db", spec={"links": []})
    web = Service(id="2", name="web", spec={"links": [{"service_id": "1"}]})
    lb = Service(id="3", name="lb", spec={"links": [{"service_id": "2"}]})
    assert removal_order([db_row, lb, web], "s") == ["3", "2", "1"]


def test_derived_state() -> None:
    assert derive_state([], False) == "initialized"
    assert derive_state(["initialized", "initialized"], True) == "initialized"
    assert derive_state(["running", "initialized"], True) == "deploying"
    assert derive_state(["stopped", "stopped"], False) == "stopped"
    assert derive_state(["running", "running"], False) == "running"
    assert derive_state(["running", "stopped"], False) == "partially_running"


async def test_a_resumed_stack_deploy_awaits_the_service_deploy_it_had_started(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    deploy_id = await request_deploy(client, admin)
    # A first worker claimed the stack deploy, started db's deploy, and died.
    started = await client.post("/v1/services/main/app/db/deploy", headers=admin.headers)
    db_deploy = started.json()["id"]
    async with db.session() as session:
        row = await work.claim(session, StackDeploy, deploy_id)
        assert row is not None
        row.service_deploys = [{"service": "db", "deploy_id": db_deploy}]
        row.lease_until = utcnow() - timedelta(seconds=1)
        await session.commit()
    assert await run_stack_deploy(env, deploy_id, 5)
    body = await stack_deploy(client, admin, deploy_id)
    assert body["state"] == "success", body
    assert body["service_deploys"][0]["id"] == db_deploy
    async with db.session() as session:
        count = (await session.execute(select(func.count()).select_from(ServiceDeploy))).scalar()
    assert count == 2  # db's (resumed, not repeated) and web's


async def test_a_removal_that_cannot_finish_leaves_the_stack_visible_with_a_reason(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    assert (await client.delete("/v1/stacks/main/app", headers=admin.headers)).status_code == 200
    # Meanwhile another stack linked to one of its services (still there until removed).
    front = {
        **copy.deepcopy(BODY),
        "name": "front",
        "services": [
            {
                "name": "lb",
                "image": "local/busybox:latest",
                "stateful": False,
                "links": [{"name": "app/web", "alias": "web"}],
            }
        ],
    }
    created = await client.post("/v1/grids/main/stacks", json=front, headers=admin.headers)
    assert created.status_code == 201, created.text
    async with db.session() as session:
        removal = (await session.execute(select(StackRemoval))).scalar_one()
    assert await run_stack_removal(env, removal.id, 5)
    async with db.session() as session:
        done = await session.get(StackRemoval, removal.id)
        assert done is not None and done.state == "error"
        assert done.reason == "service app/web is linked from front/lb"
    # web is still there (and so is db, which web links to: reverse link order stopped first).
    assert (await client.get("/v1/stacks/main/app", headers=admin.headers)).status_code == 200
    assert await service_names(db) == ["db", "lb", "web"]


async def test_deploys_of_one_stack_run_one_at_a_time_in_request_order(
    client: httpx.AsyncClient, admin: Any, grid: Grid, env: StackEnv, db: Database
) -> None:
    await client.post("/v1/grids/main/stacks", json=BODY, headers=admin.headers)
    first = await request_deploy(client, admin)
    second = await request_deploy(client, admin)
    assert not await must_wait(env, first)
    assert await must_wait(env, second)
    waiting = await stack_deploy(client, admin, second)
    assert waiting["state"] == "created"
    assert await run_stack_deploy(env, first, 5)
    assert not await must_wait(env, second)
    assert await run_stack_deploy(env, second, 5)
    assert (await stack_deploy(client, admin, second))["state"] == "success"
