"""Service actions (§2.4): deploy and scale create deploy objects and queue them, after commit."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from core import work
from models import Node, Service, ServiceDeploy, ServiceInstance
from models.db import Database
from tests.fixtures.audit import assert_audited
from tests.fixtures.service_rows import create_service, queued_jobs

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
DEPLOY_KEYS = {
    "id", "created_at", "queued_at", "started_at", "finished_at", "service_id", "state",
    "reason", "instance_count", "instance_deploys",
}  # fmt: skip
BASE = "/v1/services/main/null/web"


@pytest.fixture
async def service(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    """Grid ``main`` with a stack-less service ``web`` of 2 instances."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return await create_service(client, admin.headers, name="web", instances=2)


async def _service_row(db: Database) -> Service:
    async with db.session() as session:
        return (await session.execute(select(Service))).scalar_one()


async def _deploy_rows(db: Database) -> list[ServiceDeploy]:
    async with db.session() as session:
        query = select(ServiceDeploy).order_by(ServiceDeploy.created_at)
        return list((await session.execute(query)).scalars())


async def test_deploy_answers_a_created_deploy_and_queues_its_job(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    response = await client.post(f"{BASE}/deploy", headers=admin.headers)
    assert response.status_code == 200, response.text
    deploy = response.json()
    assert set(deploy) == DEPLOY_KEYS
    assert re.fullmatch(TIME, deploy.pop("created_at"))
    deploy_id = deploy.pop("id")
    assert deploy == {
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "service_id": "main/null/web",
        "state": "created",
        "reason": None,
        "instance_count": 2,
        "instance_deploys": [],
    }
    assert queued_jobs(redis_client) == [("deploys.run", [deploy_id])]
    row = await _service_row(db)
    assert (row.state, row.revision) == ("running", 1)
    assert row.deploy_requested_at is not None
    [stored] = await _deploy_rows(db)
    assert (stored.id, stored.state, stored.force) == (deploy_id, "created", False)
    await assert_audited(db, "grid_service", "deploy", resource_id="main/null/web")
    shown = await client.get(BASE, headers=admin.headers)
    assert shown.json()["state"] == "running"


async def test_force_deploy_bumps_the_revision(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    response = await client.post(f"{BASE}/deploy", json={"force": True}, headers=admin.headers)
    assert response.status_code == 200
    assert (await _service_row(db)).revision == 2
    assert (await _deploy_rows(db))[0].force is True
    bad = await client.post(f"{BASE}/deploy", json={"force": "yes"}, headers=admin.headers)
    assert (bad.status_code, bad.json()) == (422, {"error": {"force": "Force isn't a boolean"}})
    assert len(queued_jobs(redis_client)) == 1


async def test_scale_sets_instances_and_deploys_without_a_new_revision(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    response = await client.post(f"{BASE}/scale", json={"instances": 5}, headers=admin.headers)
    assert response.status_code == 200, response.text
    deploy = response.json()
    assert (deploy["state"], deploy["instance_count"]) == ("created", 5)
    row = await _service_row(db)
    assert (row.instances, row.state, row.revision) == (5, "running", 1)
    assert queued_jobs(redis_client) == [("deploys.run", [deploy["id"]])]
    await assert_audited(db, "grid_service", "scale", resource_id="main/null/web")
    zero = await client.post(f"{BASE}/scale", json={"instances": 0}, headers=admin.headers)
    assert (zero.status_code, zero.json()["instance_count"]) == (200, 0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, {"instances": "Instances is required"}),
        ({"instances": -1}, {"instances": "Instances is too small"}),
        ({"instances": "3"}, {"instances": "Instances isn't an integer"}),
    ],
)
async def test_scale_rejects_a_bad_count_and_queues_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
    body: dict[str, Any],
    error: dict[str, Any],
) -> None:
    response = await client.post(f"{BASE}/scale", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": error})
    assert queued_jobs(redis_client) == []
    assert await _deploy_rows(db) == []
    assert (await _service_row(db)).instances == 2


async def test_start_and_stop_change_desired_state_and_nudge_the_nodes(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    row = await _service_row(db)
    async with db.session() as session:
        for number in (1, 2):
            session.add(
                ServiceInstance(service_id=row.id, instance_number=number, desired_state="running")
            )
        await session.commit()
    stopped = await client.post(f"{BASE}/stop", headers=admin.headers)
    assert (stopped.status_code, stopped.json()) == (200, {})
    assert (await _service_row(db)).state == "stopped"
    async with db.session() as session:
        states = set((await session.execute(select(ServiceInstance.desired_state))).scalars())
    assert states == {"stopped"}
    assert queued_jobs(redis_client) == [("services.notify", [row.id])]
    await assert_audited(db, "grid_service", "stop", resource_id="main/null/web")
    redis_client.flushdb()
    started = await client.post(f"{BASE}/start", headers=admin.headers)
    assert (started.status_code, started.json()) == (200, {})
    assert (await _service_row(db)).state == "running"
    async with db.session() as session:
        states = set((await session.execute(select(ServiceInstance.desired_state))).scalars())
    assert states == {"running"}
    assert queued_jobs(redis_client) == [("services.notify", [row.id])]
    await assert_audited(db, "grid_service", "start", resource_id="main/null/web")
    assert await _deploy_rows(db) == []


async def test_restart_queues_a_restart_job(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    response = await client.post(f"{BASE}/restart", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    row = await _service_row(db)
    assert queued_jobs(redis_client) == [("services.restart", [row.id])]
    await assert_audited(db, "grid_service", "restart", resource_id="main/null/web")


async def test_deploys_list_newest_first_and_get_by_id(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    first = (await client.post(f"{BASE}/deploy", headers=admin.headers)).json()
    second = (
        await client.post(f"{BASE}/scale", json={"instances": 3}, headers=admin.headers)
    ).json()
    listed = await client.get(f"{BASE}/deploys", headers=admin.headers)
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()["deploys"]] == [second["id"], first["id"]]
    # The worker records progress on the row; clients see it on the deploy object.
    async with db.session() as session:
        row = await session.get(ServiceDeploy, first["id"])
        assert row is not None
        row.instance_deploys = [
            {"instance_number": 1, "node": "node-1", "state": "success", "error": None},
            {"instance_number": 2, "node": "node-2", "state": "error", "error": "boom"},
        ]
        work.finish(session, row, work.WorkState.ERROR, "halting deploy: one instance failed")
        await session.commit()
    got = await client.get(f"{BASE}/deploys/{first['id']}", headers=admin.headers)
    assert got.status_code == 200
    body = got.json()
    assert (body["state"], body["reason"]) == ("error", "halting deploy: one instance failed")
    assert re.fullmatch(TIME, body["finished_at"])
    assert body["instance_deploys"] == [
        {"instance_number": 1, "node": "node-1", "state": "success", "error": None},
        {"instance_number": 2, "node": "node-2", "state": "error", "error": "boom"},
    ]
    missing = await client.get(f"{BASE}/deploys/000000000000000000000000", headers=admin.headers)
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})
    # A deploy id of another service is not found through this one.
    await create_service(client, admin.headers, name="other")
    foreign = await client.get(
        f"/v1/services/main/null/other/deploys/{first['id']}", headers=admin.headers
    )
    assert (foreign.status_code, foreign.json()) == (404, {"error": "Not found"})


async def test_instances_list_and_get(
    client: httpx.AsyncClient, admin: Any, service: dict[str, Any], db: Database
) -> None:
    row = await _service_row(db)
    async with db.session() as session:
        node = Node(grid_id=row.grid_id, name="node-1", node_number=1, public_ip="192.0.2.1")
        session.add(node)
        await session.flush()
        placed = ServiceInstance(
            service_id=row.id,
            instance_number=1,
            node_id=node.id,
            desired_state="running",
            deploy_rev="2024-01-01 00:00:00 UTC",
            rev="2024-01-01 00:00:00 UTC",
            state="running",
        )
        unplaced = ServiceInstance(service_id=row.id, instance_number=2)
        session.add_all([placed, unplaced])
        await session.commit()
    listed = await client.get(f"{BASE}/instances", headers=admin.headers)
    assert listed.status_code == 200
    items = listed.json()["instances"]
    assert [i["instance_number"] for i in items] == [1, 2]
    first = items[0]
    assert set(first) == {
        "id", "created_at", "updated_at", "instance_number", "desired_state", "state",
        "deploy_rev", "rev", "error", "node",
    }  # fmt: skip
    assert first["node"] == {"id": "main/node-1", "name": "node-1", "public_ip": "192.0.2.1"}
    assert (first["state"], first["desired_state"]) == ("running", "running")
    assert items[1]["node"] is None
    got = await client.get(f"{BASE}/instances/{first['id']}", headers=admin.headers)
    assert got.json() == first
    missing = await client.get(f"{BASE}/instances/nope", headers=admin.headers)
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})
    counts = (await client.get(BASE, headers=admin.headers)).json()["instance_counts"]
    assert counts == {"total": 2, "running": 1}
    # A removed node leaves its instances in place, unplaced.
    assert (await client.delete("/v1/nodes/main/node-1", headers=admin.headers)).status_code == 200
    after = (await client.get(f"{BASE}/instances", headers=admin.headers)).json()["instances"]
    assert [i["node"] for i in after] == [None, None]


@pytest.mark.parametrize("action", ["deploy", "scale", "start", "stop", "restart"])
async def test_actions_on_unknown_services_are_404_and_queue_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    redis_client: redis.Redis,
    action: str,
) -> None:
    body = {"instances": 1} if action == "scale" else None
    for path in ("/v1/services/main/null/nope", "/v1/services/main/stack/web"):
        response = await client.post(f"{path}/{action}", json=body, headers=admin.headers)
        assert (response.status_code, response.json()) == (404, {"error": "Not found"})
    assert queued_jobs(redis_client) == []


async def test_a_refused_request_writes_and_sends_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    service: dict[str, Any],
    db: Database,
    redis_client: redis.Redis,
) -> None:
    # Bad JSON after the service was found: 400, no deploy row, no job.
    response = await client.post(f"{BASE}/deploy", content=b"[", headers=admin.headers)
    assert response.status_code == 400
    assert queued_jobs(redis_client) == []
    assert await _deploy_rows(db) == []


async def test_the_deploy_work_kind_is_registered_for_recovery() -> None:
    kind = work.get_kind("service_deploy")
    assert (kind.model, kind.actor, kind.queue) == (ServiceDeploy, "deploys.run", "deploys")
