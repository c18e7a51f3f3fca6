"""The rescheduling tick against the real database (PostgreSQL; one case on SQLite).

Deploys run through the real deployer with tests.core.deploy_support.SimulatedAgents standing
in for node RPC (no socket, no Docker); real agents are covered by
tests/e2e/test_rescheduling.py. The job sender only records: these tests run the deploys
themselves.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import func, select, text, update

from core.auth import Principal
from core.deployer import run_deploy
from core.jobs import Job
from core.reschedule import EVENT_TYPE, find_candidates, queue_redeploy, reschedule
from core.service_actions import deploy_service
from core.unit_of_work import UnitOfWork
from core.vault import Vault
from models import EventLog, Grid, Node, Service, ServiceDeploy, ServiceInstance
from models.base import utcnow
from models.db import Database
from models.migrate import upgrade
from tests.core.deploy_support import (
    SimulatedAgents,
    add_nodes,
    add_service,
    deploy_row,
    instances,
    make_env,
)
from tests.fixtures.grid_rows import create_grid_row


class RecordingSender:
    """A JobSender that remembers what it was asked to send."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def send(self, job: Job) -> None:
        """Record ``job``."""
        self.jobs.append(job)


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    """Grid ``main`` with connected nodes node-1 (az=a) and node-2 (az=b)."""
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1", "node-2", labels={"node-1": ["az=a"], "node-2": ["az=b"]})
    return grid


@pytest.fixture
def agents(db: Database, vault: Vault) -> SimulatedAgents:
    """Simulated agents for the grid's nodes."""
    return SimulatedAgents(lambda: db, vault)


async def deployed(
    db: Database, vault: Vault, agents: SimulatedAgents, service: Service
) -> ServiceDeploy:
    """Deploy ``service`` as a user would (request, then the worker) and wait for the end."""
    async with db.session() as session:
        uow = UnitOfWork(session, RecordingSender())
        grid = await session.get(Grid, service.grid_id)
        row = await session.get(Service, service.id)
        assert grid is not None and row is not None
        deploy = await deploy_service(uow, user("jane@example.com"), grid, row)
        await uow.commit()
    return await ran(db, vault, agents, deploy.id)


async def ran(db: Database, vault: Vault, agents: SimulatedAgents, deploy_id: str) -> ServiceDeploy:
    """Run deploy ``deploy_id`` to its end, as the worker does."""
    await run_deploy(make_env(db, vault, agents), deploy_id)
    await agents.settle()
    row = await deploy_row(db, deploy_id)
    assert row.state == "success", row.reason
    return row


def user(email: str) -> Principal:
    """The part of a principal deploy_service uses (the email for its event line)."""
    return cast(Principal, SimpleNamespace(user=SimpleNamespace(email=email)))


async def layout(db: Database, service: Service) -> dict[int, str]:
    """Instance number → node name."""
    async with db.session() as session:
        names = {row.id: row.name for row in await session.execute(select(Node.id, Node.name))}
    rows = await instances(db, service)
    return {i.instance_number: names.get(i.node_id or "", "-") for i in rows}


async def set_node(db: Database, name: str, **values: Any) -> None:
    """Update node ``name``."""
    async with db.session() as session:
        await session.execute(update(Node).where(Node.name == name).values(**values))
        await session.commit()


async def deploy_count(db: Database, service: Service) -> int:
    """How many deploys the service has."""
    async with db.session() as session:
        query = select(func.count()).where(ServiceDeploy.service_id == service.id)
        return int((await session.execute(query)).scalar_one())


async def scheduler_events(db: Database) -> list[str]:
    """Messages of the ``scheduler`` event lines, oldest first."""
    async with db.session() as session:
        rows = await session.execute(
            select(EventLog.message).where(EventLog.type == EVENT_TYPE).order_by(EventLog.id)
        )
        return list(rows.scalars().all())


async def test_a_drained_node_moves_its_instances_and_the_next_tick_is_quiet(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=2)
    await deployed(db, vault, agents, service)
    assert sorted((await layout(db, service)).values()) == ["node-1", "node-2"]
    assert await reschedule(db, RecordingSender()) == []  # settled: nothing to do

    await set_node(db, "node-2", availability="drain")
    sender = RecordingSender()
    queued = await reschedule(db, sender)
    assert [q.why for q in queued] == ["node node-2 was drained"]
    assert sender.jobs == [Job("deploys.run", "deploys", args=(queued[0].deploy_id,))]
    assert await scheduler_events(db) == [
        "service main/null/web rescheduled: node node-2 was drained"
    ]
    await ran(db, vault, agents, queued[0].deploy_id)
    assert await layout(db, service) == {1: "node-1", 2: "node-1"}
    assert await reschedule(db, RecordingSender()) == []


async def test_a_change_after_the_deploy_redeploys_once_while_the_deploy_is_pending(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid)
    await deployed(db, vault, agents, service)
    async with db.session() as session:  # what a PUT that changed something does
        await session.execute(
            update(Service).where(Service.id == service.id).values(revision=Service.revision + 1)
        )
        await session.commit()

    queued = await reschedule(db, RecordingSender())
    assert [q.why for q in queued] == ["revision 2 changed after the deploy of revision 1"]
    # Kontena #2919: ticks while that deploy is pending (or running) queue nothing more.
    assert await reschedule(db, RecordingSender()) == []
    assert await reschedule(db, RecordingSender()) == []
    assert await deploy_count(db, service) == 2
    await ran(db, vault, agents, queued[0].deploy_id)
    assert await reschedule(db, RecordingSender()) == []  # revision 2 is deployed now


async def test_two_ticks_at_once_queue_one_deploy(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=2)
    await deployed(db, vault, agents, service)
    await set_node(db, "node-2", availability="drain")

    # Both ticks decide before either writes: the row lock settles who queues the deploy.
    async with db.session() as session:
        first = await find_candidates(session, utcnow())
    async with db.session() as session:
        second = await find_candidates(session, utcnow())
    assert len(first) == len(second) == 1
    sender = RecordingSender()
    results = await asyncio.gather(
        queue_redeploy(db, sender, first[0]), queue_redeploy(db, sender, second[0])
    )
    assert sum(r is not None for r in results) == 1
    assert await deploy_count(db, service) == 2  # the user's and one redeploy
    assert len(sender.jobs) == 1

    # And whole ticks racing each other.
    await set_node(db, "node-2", availability="active")
    async with db.session() as session:
        await session.execute(update(ServiceDeploy).values(state="success", finished_at=utcnow()))
        await session.execute(
            update(Service).values(revision=Service.revision + 1, deployed_at=utcnow())
        )
        await session.commit()
    ticks = await asyncio.gather(*(reschedule(db, RecordingSender()) for _ in range(3)))
    assert sum(len(t) for t in ticks) == 1
    assert await deploy_count(db, service) == 3


async def test_a_tick_waits_for_a_users_deploy_in_flight_and_then_queues_nothing(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=2)
    await deployed(db, vault, agents, service)
    await set_node(db, "node-2", availability="drain")

    async with db.session() as session:
        uow = UnitOfWork(session, RecordingSender())
        row = await session.get(Service, service.id)
        grid_row = await session.get(Grid, grid.id)
        assert row is not None and grid_row is not None
        await deploy_service(uow, user("jane@example.com"), grid_row, row)
        await session.flush()  # the user's transaction holds the service row, not committed
        tick = asyncio.create_task(reschedule(db, RecordingSender()))
        await waiting_on_a_lock(db)
        await uow.commit()
    assert await tick == []
    assert await deploy_count(db, service) == 2  # the first deploy and the user's


async def waiting_on_a_lock(db: Database, deadline: float = 10.0) -> None:
    """Poll until some session of the test database waits on a row lock."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        async with db.session() as session:
            if (await session.execute(query)).scalar_one():
                return
        assert loop.time() < end, "the tick never waited for the user's transaction"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("offline_for", "moves"), [(60, False), (121, True)])
async def test_a_lost_node_moves_instances_only_after_the_grace_period(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents, offline_for: int, moves: bool
) -> None:
    service = await add_service(db, grid, instances=2)
    await deployed(db, vault, agents, service)
    now = utcnow()
    await set_node(
        db, "node-2", connected=False, disconnected_at=now - timedelta(seconds=offline_for)
    )
    queued = await reschedule(db, RecordingSender(), now=now)
    if not moves:
        assert queued == []
        return
    assert [q.why for q in queued] == [
        "node node-2 has been offline longer than the 120 s grace of strategy ha"
    ]
    agents.offline.add((await nodes(db))["node-2"])
    await ran(db, vault, agents, queued[0].deploy_id)
    assert await layout(db, service) == {1: "node-1", 2: "node-1"}


async def test_an_offline_node_within_grace_does_not_attract_instances(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    """Both instances went to node-1 while node-2 was away: no redeploy every tick."""
    now = utcnow()
    await set_node(db, "node-2", connected=False, disconnected_at=now - timedelta(seconds=10))
    agents.offline.add((await nodes(db))["node-2"])
    service = await add_service(db, grid, instances=2)
    await deployed(db, vault, agents, service)
    assert await layout(db, service) == {1: "node-1", 2: "node-1"}
    assert await reschedule(db, RecordingSender(), now=now) == []


async def nodes(db: Database) -> dict[str, str]:
    """Node name → id."""
    async with db.session() as session:
        return {row.name: row.id for row in await session.execute(select(Node.name, Node.id))}


async def test_a_daemon_service_gets_an_instance_on_a_node_that_joins(
    db: Database, vault: Vault, agents: SimulatedAgents
) -> None:
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1")
    service = await add_service(db, grid, strategy="daemon")
    await deployed(db, vault, agents, service)
    assert await layout(db, service) == {1: "node-1"}

    async with db.session() as session:
        session.add(
            Node(
                grid_id=grid.id,
                name="node-2",
                node_id="SIM:main:node-2",
                node_number=2,
                connected=True,
                updated=True,
            )
        )
        await session.commit()
    queued = await reschedule(db, RecordingSender())
    assert [q.why for q in queued] == ["node node-2 is available"]
    await ran(db, vault, agents, queued[0].deploy_id)
    assert await layout(db, service) == {1: "node-1", 2: "node-2"}


async def test_an_elapsed_interval_redeploys_with_a_new_revision(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, deploy_opts={"interval": 60})
    await deployed(db, vault, agents, service)
    async with db.session() as session:
        deployed_at = (await session.get(Service, service.id)).deployed_at  # type: ignore[union-attr]
    assert deployed_at is not None
    assert await reschedule(db, RecordingSender(), now=deployed_at + timedelta(seconds=59)) == []

    queued = await reschedule(db, RecordingSender(), now=deployed_at + timedelta(seconds=60))
    assert [q.why for q in queued] == ["deploy interval of 60 s elapsed"]
    deploy = await deploy_row(db, queued[0].deploy_id)
    assert deploy.force is True
    async with db.session() as session:
        assert (await session.get(Service, service.id)).revision == 2  # type: ignore[union-attr]


async def test_an_interval_service_under_a_slow_deploy_never_has_two_pending_deploys(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    """Kontena #2919: interval redeploys piled up every 20 s while one was running."""
    service = await add_service(db, grid, deploy_opts={"interval": 1})
    await deployed(db, vault, agents, service)
    agents.behaviour[1] = "hang"  # the next deploy never sees its instance report: slow
    start = utcnow()
    queued = await reschedule(db, RecordingSender(), now=start + timedelta(seconds=2))
    assert len(queued) == 1
    runner = asyncio.create_task(run_deploy(make_env(db, vault, agents), queued[0].deploy_id))
    try:
        async with asyncio.timeout(10):
            while (await deploy_row(db, queued[0].deploy_id)).state != "ongoing":
                await asyncio.sleep(0.02)
        for tick in range(3, 30):  # a tick per simulated second, the deploy pending or ongoing
            assert (
                await reschedule(db, RecordingSender(), now=start + timedelta(seconds=tick)) == []
            )
        async with db.session() as session:
            states = (
                await session.execute(
                    select(ServiceDeploy.state).where(ServiceDeploy.service_id == service.id)
                )
            ).scalars()
            assert sorted(states) == ["ongoing", "success"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await agents.settle()


async def test_stateful_and_stopped_services_are_never_rescheduled(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    stateful = await add_service(db, grid, "db")
    stopped = await add_service(db, grid, "old", instances=2)
    await deployed(db, vault, agents, stateful)
    await deployed(db, vault, agents, stopped)
    async with db.session() as session:
        await session.execute(
            update(Service).where(Service.id == stateful.id).values(stateful=True, revision=5)
        )
        await session.execute(
            update(Service).where(Service.id == stopped.id).values(state="stopped", revision=5)
        )
        await session.commit()
    now = utcnow()
    await set_node(db, "node-1", connected=False, disconnected_at=now - timedelta(hours=1))
    assert await reschedule(db, RecordingSender(), now=now) == []
    assert await scheduler_events(db) == []


async def test_two_ticks_at_once_queue_one_deploy_on_sqlite(tmp_path: Path, vault: Vault) -> None:
    """Embedded mode: SQLite has no row locks; the tick's first write serializes instead."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kontena.db'}"
    await asyncio.to_thread(upgrade, url)
    database = Database(url)
    try:
        grid = await create_grid_row(database, vault, "main")
        await add_nodes(database, grid, "node-1")
        service = await add_service(database, grid)
        async with database.session() as session:
            await session.execute(
                update(Service).values(revision=2, deployed_revision=1, deployed_at=utcnow())
            )
            session.add(
                ServiceInstance(
                    service_id=service.id,
                    instance_number=1,
                    node_id=(await session.execute(select(Node.id))).scalar_one(),
                    desired_state="running",
                )
            )
            await session.commit()
        async with database.session() as session:
            first = await find_candidates(session, utcnow())
        async with database.session() as session:
            second = await find_candidates(session, utcnow())
        results = await asyncio.gather(
            queue_redeploy(database, RecordingSender(), first[0]),
            queue_redeploy(database, RecordingSender(), second[0]),
        )
        assert sum(r is not None for r in results) == 1
        assert await deploy_count(database, service) == 1
    finally:
        await database.dispose()
