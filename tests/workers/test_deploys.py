"""The deploy actors on a real Redis broker and an in-process Dramatiq worker.

Node RPC is tests.core.deploy_support.SimulatedAgents: the agents are simulated in-process
(real pod handlers, no socket, no Docker), so these tests are about the actors: queueing,
nudges, restarts and removal.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import pytest
from sqlalchemy import select

from core.deployer import DeployEnv
from core.jobs import Job
from core.vault import Vault
from models import EventLog, Grid, Node, Service, ServiceInstance
from models.db import Database
from tests.core.deploy_support import (
    SimulatedAgents,
    add_deploy,
    add_nodes,
    add_service,
    deploy_row,
    instances,
)
from tests.fixtures.grid_rows import create_grid_row
from tests.workers.support import eventually
from workers import context
from workers.broker import DramatiqSender


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    """Grid ``main`` with connected nodes node-1 and node-2."""
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1", "node-2", labels={"node-1": ["az=a"], "node-2": ["az=b"]})
    return grid


@pytest.fixture
def agents(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, worker: dramatiq.Worker
) -> SimulatedAgents:
    """Simulated agents the worker's actors talk to (on the worker's own event loop)."""
    simulated = SimulatedAgents(context.database, vault)

    def env() -> DeployEnv:
        return DeployEnv(db=context.database(), vault=vault, rpc=simulated, poll_interval=0.02)

    monkeypatch.setattr("workers.deploys.deploy_env", env)
    return simulated


def send(broker: dramatiq.Broker) -> Callable[[str, str], None]:
    """Send a job to an actor of the deploys queue with one id argument."""

    def sender(actor: str, arg: str) -> None:
        DramatiqSender(broker).send(Job(actor=actor, queue="deploys", args=(arg,)))

    return sender


async def test_deploys_of_one_service_run_one_after_the_other(
    db: Database, grid: Grid, agents: SimulatedAgents, redis_broker: dramatiq.Broker
) -> None:
    agents.delay = 0.3
    service = await add_service(db, grid, instances=2)
    first, second = await add_deploy(db, service), await add_deploy(db, service)
    send(redis_broker)("deploys.run", second.id)
    send(redis_broker)("deploys.run", first.id)

    async def both_done() -> bool:
        rows = [await deploy_row(db, first.id), await deploy_row(db, second.id)]
        return all(row.state in ("success", "error") for row in rows)

    await eventually(both_done, timeout=30)
    one, two = await deploy_row(db, first.id), await deploy_row(db, second.id)
    assert (one.state, two.state) == ("success", "success")
    assert one.finished_at is not None and two.started_at is not None
    assert two.started_at >= one.finished_at  # never concurrently
    assert two.queued_at is not None and two.queued_at <= two.started_at
    assert two.attempts == 1  # the waits used no retry
    assert len(await instances(db, service)) == 2


async def test_start_stop_nudges_each_node_holding_an_instance(
    db: Database, grid: Grid, agents: SimulatedAgents, redis_broker: dramatiq.Broker
) -> None:
    service = await add_service(db, grid, instances=2)
    send(redis_broker)("deploys.run", (await add_deploy(db, service)).id)

    async def deployed() -> bool:
        placed = await instances(db, service)
        return len(placed) == 2 and all(i.state == "running" for i in placed)

    await eventually(deployed)
    before = len(agents.calls)
    send(redis_broker)("services.notify", service.id)

    async def nudged() -> list[str]:
        return agents.nudges()[2:] if len(agents.calls) >= before + 2 else []

    nodes = {i.node_id for i in await instances(db, service)}
    assert set(await eventually(nudged)) == nodes


async def test_restart_asks_each_instances_node_to_restart_it(
    db: Database, grid: Grid, agents: SimulatedAgents, redis_broker: dramatiq.Broker
) -> None:
    service = await add_service(db, grid, instances=2)
    send(redis_broker)("deploys.run", (await add_deploy(db, service)).id)
    await eventually(lambda: _state(db, service, "success"))
    send(redis_broker)("services.restart", service.id)

    async def restarts() -> list[tuple[str, list[object]]]:
        return [(pk, p) for pk, m, p in agents.calls if m == "/service_pods/restart"]

    await eventually(lambda: _count(restarts, 2))
    placed = {i.instance_number: i.node_id for i in await instances(db, service)}
    assert sorted(await restarts(), key=lambda c: str(c[1])) == [
        (placed[1], [service.id, 1]),
        (placed[2], [service.id, 2]),
    ]


async def test_remove_waits_for_the_agents_then_deletes_the_service(
    db: Database, grid: Grid, agents: SimulatedAgents, redis_broker: dramatiq.Broker
) -> None:
    service = await add_service(db, grid, instances=2)
    send(redis_broker)("deploys.run", (await add_deploy(db, service)).id)
    await eventually(lambda: _state(db, service, "success"))
    placed = await instances(db, service)
    # One node went offline meanwhile: its instance is not waited for.
    async with db.session() as session:
        node = await session.get(Node, placed[1].node_id)
        assert node is not None
        node.connected = False
        agents.offline.add(node.id)
        await session.commit()
    send(redis_broker)("services.remove", service.id)

    async def gone() -> bool:
        async with db.session() as session:
            return await session.get(Service, service.id) is None

    await eventually(gone)
    async with db.session() as session:
        left = (await session.execute(select(ServiceInstance))).scalars().all()
        messages = (await session.execute(select(EventLog.message))).scalars().all()
    assert left == []
    assert "service main/null/web removed" in messages
    # The online node's agent was asked and removed its container before the row went.
    assert agents.containers[placed[0].node_id or ""] == set()


async def _state(db: Database, service: Service, state: str) -> bool:
    async with db.session() as session:
        from models import ServiceDeploy

        rows = await session.execute(
            select(ServiceDeploy.state).where(ServiceDeploy.service_id == service.id)
        )
        return list(rows.scalars()) == [state]


async def _count(probe: Callable[[], object], n: int) -> bool:
    result = await probe()  # type: ignore[misc]
    return len(result) >= n
