"""The master's side of health checks and hooks, on the real database with simulated agents.

Deploys of a health-checked service wait for a healthy probe (Kontena #2770); health reports
land on the instance and in the service's counts; oneshot hooks are recorded and left out of
later pods. The agents are tests.core.deploy_support.SimulatedAgents (no socket, no Docker);
real agents and Docker are covered by tests/e2e/test_hooks_health.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from core.deployer import run_deploy
from core.node_updates import AgentError
from core.pod_rpc import list_pods, mark_oneshot_hook, set_health
from core.service_spec import HooksSpec, ServiceUpdate, apply_fields
from core.services import instance_counts
from core.vault import Vault
from models import Grid, Node, Service
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

CHECK = {"protocol": "http", "port": 8080, "uri": "/health", "timeout": 1, "interval": 2}


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    """Grid ``main`` with connected nodes node-1 and node-2."""
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1", "node-2")
    return grid


@pytest.fixture
async def agents(db: Database, vault: Vault) -> SimulatedAgents:
    """Simulated agents for the grid's nodes."""
    return SimulatedAgents(lambda: db, vault)


async def node_of(db: Database, node_id: str) -> Node:
    """The node row."""
    async with db.session() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        return node


async def test_a_health_checked_deploy_succeeds_once_instances_are_healthy(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.health.update({1: "healthy", 2: "healthy"})
    service = await add_service(db, grid, instances=2, health_check=CHECK)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "success", row.reason
    assert [i.health_status for i in await instances(db, service)] == ["healthy", "healthy"]
    async with db.session() as session:
        counts = (await instance_counts(session, [service.id]))[service.id]
    assert (counts.total, counts.healthy, counts.unhealthy) == (2, 2, 0)


async def test_a_running_but_unprobed_instance_is_not_deployed_until_the_timeout(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=1, health_check=CHECK)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents, instance_timeout=0.3), deploy.id)
    row = await deploy_row(db, deploy.id)
    node = row.instance_deploys[0]["node"]
    assert row.state == "error"
    assert row.reason == (
        f"halting deploy of main/null/web, one or more instances failed: web-1 on node {node}: "
        "Timeout after waiting 0.3s until: service main/null/web-1 is running and healthy on "
        f"node main/{node}"
    )


async def test_an_unhealthy_instance_halts_the_deploy_naming_instance_node_and_cause(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.health.update({1: "healthy", 2: "GET http://10.0.0.2:8080/health answered 503"})
    service = await add_service(db, grid, instances=3, health_check=CHECK)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    node = row.instance_deploys[1]["node"]
    assert row.state == "error"
    assert row.reason == (
        f"halting deploy of main/null/web, one or more instances failed: web-2 on node {node}: "
        "Service instance is unhealthy: GET http://10.0.0.2:8080/health answered 503"
    )
    assert [(d["instance_number"], d["state"]) for d in row.instance_deploys] == [
        (1, "success"),
        (2, "error"),
    ]


async def test_without_a_health_check_running_is_enough(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    # port and protocol both null: no health check (Kontena's way of removing one).
    check = {**CHECK, "port": None, "protocol": None}
    service = await add_service(db, grid, instances=1, health_check=check)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    assert (await deploy_row(db, deploy.id)).state == "success"


async def test_health_reports_of_other_revisions_nodes_or_statuses_are_ignored(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.health[1] = "healthy"
    service = await add_service(db, grid, health_check=CHECK)
    await run_deploy(make_env(db, vault, agents), (await add_deploy(db, service)).id)
    await agents.settle()
    (instance,) = await instances(db, service)
    own = await node_of(db, str(instance.node_id))
    other = next(n for n in (await _nodes(db)) if n.id != own.id)
    base = {"service_id": service.id, "instance_number": 1, "status": "unhealthy"}
    async with db.session() as session:
        await set_health(session, own, [own.node_id, {**base, "rev": "older"}])
        await set_health(session, other, [other.node_id, {**base, "rev": instance.deploy_rev}])
        with pytest.raises(AgentError, match="unknown status"):
            await set_health(
                session, own, [own.node_id, {**base, "rev": instance.deploy_rev, "status": "meh"}]
            )
        await session.commit()
    (unchanged,) = await instances(db, service)
    assert unchanged.health_status == "healthy"

    # A stopped container has no health.
    from core.pod_rpc import set_state

    async with db.session() as session:
        state = {"service_id": service.id, "instance_number": 1, "rev": instance.deploy_rev}
        await set_state(session, own, [own.node_id, {**state, "state": "stopped"}])
        await session.commit()
    (stopped,) = await instances(db, service)
    assert stopped.health_status is None


async def _nodes(db: Database) -> list[Node]:
    async with db.session() as session:
        return list((await session.execute(select(Node))).scalars().all())


def hooks_spec(**extra: Any) -> list[dict[str, Any]]:
    """Stored hooks: a oneshot post_start for every instance and a pre_start for instance 2."""
    return [
        {
            "name": "init",
            "type": "post_start",
            "cmd": "echo init",
            "instances": ["*"],
            "oneshot": True,
            "done": [],
            **extra,
        },
        {
            "name": "warm",
            "type": "pre_start",
            "cmd": "echo warm",
            "instances": ["2"],
            "oneshot": False,
            "done": [],
        },
    ]


async def pods_of(db: Database, vault: Vault, node: Node) -> dict[int, dict[str, Any]]:
    """The node's pods by instance number, as its agent lists them."""
    async with db.session() as session:
        session.info["vault"] = vault
        fresh = await session.get(Node, node.id)
        assert fresh is not None
        pods = (await list_pods(session, fresh, [fresh.node_id]))["service_pods"]
    return {pod["instance_number"]: pod for pod in pods}


async def test_a_oneshot_hook_is_recorded_and_left_out_of_later_pods(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(
        db, grid, instances=2, hooks=hooks_spec(), affinity=["node==node-1"], health_check=CHECK
    )
    agents.health.update({1: "healthy", 2: "healthy"})
    await run_deploy(make_env(db, vault, agents), (await add_deploy(db, service)).id)
    await agents.settle()
    node = next(n for n in await _nodes(db) if n.name == "node-1")
    pods = await pods_of(db, vault, node)
    init = {"name": "init", "type": "post_start", "cmd": "echo init", "oneshot": True}
    warm = {"name": "warm", "type": "pre_start", "cmd": "echo warm"}
    assert pods[1]["hooks"] == [init]
    assert pods[2]["hooks"] == [init, warm]
    # The check reaches the agent as a pod field and, as on Kontena, as container labels.
    assert pods[1]["health_check"] == CHECK
    assert pods[1]["labels"]["io.kontena.health_check.uri"] == "/health"

    ref = {"type": "post_start", "name": "init", "cmd": "echo init"}
    where = {"service_id": service.id, "instance_number": 1}
    async with db.session() as session:
        before = await session.get(Service, service.id)
        assert before is not None
        updated_at = before.updated_at
    async with db.session() as session:
        await mark_oneshot_hook(session, node, [node.node_id, where, ref])
        await mark_oneshot_hook(session, node, [node.node_id, where, ref])  # idempotent
        await session.commit()
    async with db.session() as session:
        stored = await session.get(Service, service.id)
        assert stored is not None
        assert stored.spec["hooks"][0]["done"] == [1]
        assert stored.updated_at == updated_at  # bookkeeping, not an update of the service
    pods = await pods_of(db, vault, node)
    assert "hooks" not in pods[1]  # omitted when empty
    assert pods[2]["hooks"] == [init, warm]

    other = next(n for n in await _nodes(db) if n.name == "node-2")
    async with db.session() as session:
        with pytest.raises(AgentError, match="not on this node"):
            await mark_oneshot_hook(session, other, [other.node_id, where, ref])
        with pytest.raises(AgentError, match="has no post_start hook nope"):
            await mark_oneshot_hook(session, node, [node.node_id, where, {**ref, "name": "nope"}])


def test_an_unchanged_hook_keeps_its_oneshot_record_through_a_put() -> None:
    spec = {"hooks": hooks_spec(done=[1, 3])}
    same = msgspec.convert(
        {
            "hooks": {
                "post_start": [
                    {"name": "init", "cmd": "echo init", "instances": "*", "oneshot": True}
                ],
                "pre_start": [{"name": "warm", "cmd": "echo warm", "instances": "2"}],
            }
        },
        ServiceUpdate,
    )
    by_name = {hook["name"]: hook for hook in spec["hooks"]}
    # Nothing changed (so no new revision either): the oneshot record stays.
    assert {h["name"]: h for h in apply_fields(spec, same)["hooks"]} == by_name
    changed = msgspec.structs.replace(
        same,
        hooks=msgspec.convert(
            {"post_start": [{"name": "init", "cmd": "echo again", "instances": "*"}]},
            HooksSpec,
        ),
    )
    assert [h["done"] for h in apply_fields(spec, changed)["hooks"]] == [[]]
