"""The rescheduling tick: scheduled every KONTENA_RESCHEDULE_INTERVAL s, run once per slot."""

from __future__ import annotations

import dramatiq
import msgspec
from sqlalchemy import func, select, update

from core.config import Settings
from core.jobs import Job
from core.vault import Vault
from models import EventLog, Node, Service, ServiceDeploy, ServiceInstance, TickRun
from models.base import utcnow
from models.db import Database
from scheduler.clock import SCHEDULE
from tests.core.deploy_support import add_nodes, add_service
from tests.fixtures.grid_rows import create_grid_row
from tests.workers.support import eventually
from workers.broker import DramatiqSender
from workers.reschedule import RESCHEDULE


def test_the_tick_is_scheduled_every_twenty_seconds_unless_configured(settings: Settings) -> None:
    (tick,) = [t for t in SCHEDULE if t.actor == RESCHEDULE]
    assert (tick.queue, tick.resolved(settings).period) == ("deploys", 20.0)
    fast = msgspec.structs.replace(settings, reschedule_interval=1.5)
    assert tick.resolved(fast).period == 1.5


def reschedule_tick(slot: int, epoch: int = 1) -> Job:
    """The tick as the scheduler sends it."""
    return Job(RESCHEDULE, "deploys", kwargs={"slot": slot, "epoch": epoch})


async def test_the_tick_queues_one_redeploy_per_slot_through_the_broker(
    db: Database, vault: Vault, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    grid = await create_grid_row(db, vault, "main")
    # Not connected: the queued deploy fails at once (no node), so the queue drains quickly.
    (node,) = await add_nodes(db, grid, "node-1")
    service = await add_service(db, grid)
    async with db.session() as session:
        # Deployed at revision 1, changed since (a PUT): lagging.
        await session.execute(
            update(Service).values(revision=2, deployed_revision=1, deployed_at=utcnow())
        )
        await session.execute(update(Node).values(connected=False))
        session.add(
            ServiceInstance(
                service_id=service.id, instance_number=1, node_id=node.id, desired_state="running"
            )
        )
        await session.commit()

    sender = DramatiqSender(redis_broker)
    sender.send(reschedule_tick(700))
    sender.send(reschedule_tick(700))  # a duplicate delivery of the same slot

    async def ran() -> bool:
        async with db.session() as session:
            return await session.get(TickRun, (RESCHEDULE, 700)) is not None

    async def scheduler_events() -> int:
        async with db.session() as session:
            query = select(func.count()).where(EventLog.type == "scheduler")
            return int((await session.execute(query)).scalar_one())

    await eventually(ran)
    await eventually(scheduler_events)
    redis_broker.join("deploys", timeout=30_000)
    async with db.session() as session:
        deploys = (await session.execute(select(ServiceDeploy))).scalars().all()
    assert [d.state for d in deploys] == ["error"]  # its job ran; never a second deploy
    assert await scheduler_events() == 1
