"""The liveness sweep through the real Redis broker: overdue nodes go offline, once per slot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dramatiq
from sqlalchemy import select, update

from api.app import create_app
from core.config import Settings
from core.jobs import Job
from core.rate_limit import MemoryRateLimiter
from core.rpc_redis import RedisNodeRpc
from core.runtime import Runtime
from core.tokens import digest, new_grid_token
from core.vault import Vault
from models import EventLog, Grid, Node, TickRun
from models.base import utcnow
from models.db import Database
from scheduler.clock import SCHEDULE
from tests.fixtures.fake_agent import agent_headers, fake_agent
from tests.fixtures.server import serve
from tests.workers.support import eventually
from workers.broker import DramatiqSender


def liveness_tick(slot: int, epoch: int = 1) -> Job:
    """The tick as the scheduler sends it."""
    return Job("nodes.liveness", "nodes", kwargs={"slot": slot, "epoch": epoch})


async def add_grid(db: Database) -> tuple[str, str]:
    """A grid; returns (id, join token)."""
    token = new_grid_token()
    grid = Grid(name="main", token_hash=digest(token), token_encrypted="x")
    async with db.session() as session:
        session.add(grid)
        await session.commit()
    return grid.id, token


async def rows(db: Database) -> dict[str, Node]:
    """Node rows by name."""
    async with db.session() as session:
        return {n.name: n for n in (await session.execute(select(Node))).scalars()}


async def ran(db: Database, slot: int) -> bool:
    """True once the liveness tick of ``slot`` ran."""
    async with db.session() as session:
        return await session.get(TickRun, ("nodes.liveness", slot)) is not None


def test_the_sweep_is_scheduled_every_ten_seconds() -> None:
    assert [(t.queue, t.period) for t in SCHEDULE if t.actor == "nodes.liveness"] == [("nodes", 10)]


async def test_overdue_nodes_go_offline(
    db: Database, settings: Settings, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    grid_id, _ = await add_grid(db)
    now = utcnow()
    overdue = now - timedelta(seconds=settings.node_offline_after + 5)
    recent = now - timedelta(seconds=settings.node_offline_after - 15)
    common: dict[str, Any] = {"grid_id": grid_id, "node_id": None, "updated": True}
    async with db.session() as session:
        session.add_all(
            [
                Node(**common, name="stale", node_number=1, connected=True, last_seen_at=overdue),
                Node(**common, name="fresh", node_number=2, connected=True, last_seen_at=recent),
                Node(**common, name="gone", node_number=3, connected=False, last_seen_at=overdue),
            ]
        )
        await session.commit()

    DramatiqSender(redis_broker).send(liveness_tick(900))
    await eventually(lambda: ran(db, 900))
    nodes = await rows(db)
    assert (nodes["stale"].connected, nodes["fresh"].connected) == (False, True)
    assert nodes["stale"].disconnected_at is not None
    assert nodes["stale"].disconnected_at >= now
    assert nodes["stale"].websocket_connection == {
        "opened": False,
        "close_code": None,
        "close_reason": "keepalive overdue",
    }
    assert nodes["gone"].disconnected_at is None  # already offline: untouched
    async with db.session() as session:
        events = (await session.execute(select(EventLog.type, EventLog.node))).all()
    assert [tuple(e) for e in events] == [("node:disconnect", "stale")]

    # The same slot again (a redelivery, a failover) does nothing more.
    async with db.session() as session:
        await session.execute(update(Node).values(connected=True))
        await session.commit()
    sender = DramatiqSender(redis_broker)
    sender.send(liveness_tick(900))
    sender.send(liveness_tick(901))
    await eventually(lambda: ran(db, 901))
    assert not (await rows(db))["stale"].connected


async def test_a_swept_node_that_is_still_connected_gets_closed(
    db: Database,
    settings: Settings,
    vault: Vault,
    redis_broker: dramatiq.Broker,
    worker: dramatiq.Worker,
) -> None:
    """A hung socket whose node the sweep marked offline is closed by its holder (4031)."""
    _, token = await add_grid(db)
    rpc = RedisNodeRpc(settings.redis_url, lambda: db)
    runtime = Runtime(
        settings=settings,
        db=db,
        vault=vault,
        sender=DramatiqSender(redis_broker),
        rate_limiter=MemoryRateLimiter(60, 60),
        node_rpc=rpc,
    )
    async with (
        serve(create_app(runtime)) as url,
        fake_agent(url, agent_headers("AAAA:1111", grid_token=token)) as agent,
    ):
        await agent.joined()
        async with db.session() as session:
            await session.execute(update(Node).values(last_seen_at=utcnow() - timedelta(hours=1)))
            await session.commit()
        DramatiqSender(redis_broker).send(liveness_tick(902))
        assert await agent.close_code(10.0) == (4031, "connection reset")
    assert not (await rows(db))["host"].connected
