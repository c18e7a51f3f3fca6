"""Named volumes from service spec to pod, volume instances and placement, on the real database.

Agents are tests.core.deploy_support.SimulatedAgents (no socket, no Docker) listing pods through
the real ``/node_service_pods/list`` handler; tests/e2e/test_volumes.py runs real agents.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from core.deployer import run_deploy
from core.pod_rpc import list_pods
from core.protocol import VOLUME_LABEL_GRID, VOLUME_LABEL_ID, VOLUME_LABEL_SCOPE
from core.vault import Vault
from core.volume_rpc import list_volumes
from models import Grid, Node, Service, ServiceInstance, Volume, VolumeInstance
from models.db import Database
from tests.core.deploy_support import (
    SimulatedAgents,
    add_deploy,
    add_nodes,
    add_service,
    deploy_row,
    instances,
    make_env,
)
from tests.fixtures.grid_rows import create_grid_row


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    """Grid ``main`` with connected nodes node-1 and node-2 and three volumes, one per scope."""
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1", "node-2")
    async with db.session() as session:
        session.add_all(
            [
                Volume(grid_id=grid.id, name="data", scope="instance", driver="local"),
                Volume(
                    grid_id=grid.id,
                    name="cache",
                    scope="stack",
                    driver="local",
                    driver_opts={"type": "tmpfs", "device": "tmpfs"},
                ),
                Volume(grid_id=grid.id, name="shared", scope="grid", driver="local"),
            ]
        )
        await session.commit()
    return grid


async def _pods(db: Database, vault: Vault, node_name: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        session.info["vault"] = vault
        node = (await session.scalars(select(Node).where(Node.name == node_name))).one()
        result = await list_pods(session, node, [node.node_id])
        await session.commit()
    pods: list[dict[str, Any]] = result["service_pods"]
    return pods


async def _place(db: Database, service: Service, number: int, node_name: str) -> None:
    async with db.session() as session:
        node = (await session.scalars(select(Node).where(Node.name == node_name))).one()
        session.add(
            ServiceInstance(
                service_id=service.id,
                instance_number=number,
                node_id=node.id,
                desired_state="running",
                deploy_rev="rev-1",
            )
        )
        await session.commit()


async def test_pod_mounts_resolve_each_scope_to_its_docker_volume(
    db: Database, vault: Vault, grid: Grid
) -> None:
    volumes = [
        "data:/var/lib/data",
        "cache:/cache:ro",
        "shared:/shared:rw,z",
        "/srv/host:/host:ro",
        "nosuch:/lost",
        "/anon",
    ]
    plain = await add_service(db, grid, "db", volumes=volumes)
    async with db.session() as session:
        await session.execute(
            update(Node)
            .where(Node.name == "node-2")
            .values(volume_drivers=[{"name": "local", "version": "1.2"}])
        )
        await session.commit()
    await _place(db, plain, 2, "node-1")
    stacked = await add_service(db, grid, "api", volumes=volumes[:3])
    async with db.session() as session:
        await session.execute(update(Service).where(Service.id == stacked.id).values(stack="app"))
        await session.commit()
    await _place(db, stacked, 1, "node-2")

    [pod] = await _pods(db, vault, "node-1")
    labels = {VOLUME_LABEL_GRID: "main"}
    assert pod["volumes"] == [
        {
            "path": "/var/lib/data",
            "name": "db.data-2",
            "driver": "local",
            "labels": {**labels, VOLUME_LABEL_ID: "main/data", VOLUME_LABEL_SCOPE: "instance"},
        },
        {
            "path": "/cache",
            "flags": "ro",
            "name": "null.cache",
            "driver": "local",
            "driver_opts": {"type": "tmpfs", "device": "tmpfs"},
            "labels": {**labels, VOLUME_LABEL_ID: "main/cache", VOLUME_LABEL_SCOPE: "stack"},
        },
        {
            "path": "/shared",
            "flags": "rw,z",
            "name": "shared",
            "driver": "local",
            "labels": {**labels, VOLUME_LABEL_ID: "main/shared", VOLUME_LABEL_SCOPE: "grid"},
        },
        {"path": "/host", "flags": "ro", "bind_mount": "/srv/host"},
        {"path": "/lost"},  # not a grid volume: anonymous, as on Kontena
        {"path": "/anon"},
    ]
    [pod] = await _pods(db, vault, "node-2")
    # A stack service's names carry its stack; node-2 reports a plugin version: it is pinned.
    assert [(v["name"], v["driver"]) for v in pod["volumes"]] == [
        ("app.api.data-1", "local:1.2"),
        ("app.cache", "local:1.2"),
        ("shared", "local:1.2"),
    ]

    # Listing recorded what each node now holds; /node_volumes/list hands it back.
    async with db.session() as session:
        held = (
            await session.execute(
                select(Node.name, VolumeInstance.name)
                .join(Node, Node.id == VolumeInstance.node_id)
                .order_by(Node.name, VolumeInstance.name)
            )
        ).all()
        node = (await session.scalars(select(Node).where(Node.name == "node-1"))).one()
        listed = await list_volumes(session, node, [node.node_id])
    assert [tuple(row) for row in held] == [
        ("node-1", "db.data-2"),
        ("node-1", "null.cache"),
        ("node-1", "shared"),
        ("node-2", "app.api.data-1"),
        ("node-2", "app.cache"),
        ("node-2", "shared"),
    ]
    assert [v["name"] for v in listed["volumes"]] == ["db.data-2", "null.cache", "shared"]
    assert listed["volumes"][1]["driver_opts"] == {"type": "tmpfs", "device": "tmpfs"}
    # Listing again records nothing twice.
    await _pods(db, vault, "node-1")
    async with db.session() as session:
        assert len((await session.scalars(select(VolumeInstance))).all()) == 6


async def test_redeploys_keep_each_instance_with_its_volume(
    db: Database, vault: Vault, grid: Grid
) -> None:
    agents = SimulatedAgents(lambda: db, vault)
    service = await add_service(db, grid, "db", instances=2, volumes=["data:/data"])
    first = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), first.id)
    assert (await deploy_row(db, first.id)).state == "success"
    await agents.settle()
    where = {i.instance_number: i.node_id for i in await instances(db, service)}
    assert len(set(where.values())) == 2
    for _ in range(3):
        again = await add_deploy(db, service)
        await run_deploy(make_env(db, vault, agents), again.id)
        assert (await deploy_row(db, again.id)).state == "success"
        await agents.settle()
        assert {i.instance_number: i.node_id for i in await instances(db, service)} == where
    async with db.session() as session:
        held = (await session.execute(select(VolumeInstance.node_id, VolumeInstance.name))).all()
    assert {(node, f"db.data-{n}") for n, node in where.items()} == {tuple(r) for r in held}


async def test_a_driver_no_node_has_fails_the_deploy_with_the_filter_reason(
    db: Database, vault: Vault, grid: Grid
) -> None:
    async with db.session() as session:
        session.add(Volume(grid_id=grid.id, name="ebs", scope="instance", driver="rexray"))
        await session.commit()
    service = await add_service(db, grid, "db", volumes=["ebs:/data"])
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, SimulatedAgents(lambda: db, vault)), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error"
    assert 'Did not find any nodes with required volume drivers: ["rexray"]' in (row.reason or "")


async def test_stack_services_map_their_volumes_to_external_grid_volumes(
    db: Database, grid: Grid
) -> None:
    """A stack's ``volumes: [{name, external}]`` (latest revision) names the grid volume."""
    from core.service_volumes import service_volume_refs
    from models import Stack, StackRevision

    async with db.session() as session:
        stack = Stack(grid_id=grid.id, name="shop")
        session.add(stack)
        await session.flush()
        for number, external in ((1, "cache"), (2, "shared")):
            session.add(
                StackRevision(
                    stack_id=stack.id,
                    revision=number,
                    stack_name="me/shop",
                    version="1",
                    volumes=[
                        {"name": "files", "external": external},
                        {"name": "data", "external": True},
                    ],
                )
            )
        service = Service(
            grid_id=grid.id,
            stack="shop",
            name="web",
            image="busybox",
            spec={"volumes": ["files:/files", "data:/data", "nope:/nope"]},
        )
        session.add(service)
        await session.commit()
        refs = await service_volume_refs(session, service)
    assert {local: ref.name for local, ref in refs.items()} == {"files": "shared", "data": "data"}
