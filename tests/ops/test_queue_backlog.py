"""``/v1/queues`` against real ``kontena-master worker`` processes: a backlog drains, a dead
letter made by a real worker is requeued through the API and then runs.

The API runs in the test's event loop; the workers are real processes on this run's PostgreSQL
and Redis. Nothing is mocked: the dead letter is Dramatiq's own nack of a job that failed while
its table was missing (as during a botched migration), and it runs once the table is back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select, text

from core.config import Settings
from core.jobs import Job
from core.runtime import Runtime
from models import ServiceDeploy, TickRun
from models.db import Database
from tests.conftest import Caller
from tests.e2e.test_real_nodes import eventually
from tests.fixtures.processes import Processes, role_env
from workers.maintenance import RETENTION

pytestmark = pytest.mark.slow

GRID = "backlog"
SERVICES = 4
# A slot no scheduler sends: the TickRun row it leaves is this test's proof that the job ran.
SLOT = 42


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The worker processes of the test; all stopped afterwards."""
    started = Processes(tmp_path)
    yield started
    started.close()


@pytest.fixture
async def tick_runs_away(db: Database) -> AsyncIterator[None]:
    """``tick_runs`` renamed away (jobs that record a tick fail); renamed back afterwards."""
    async with db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tick_runs RENAME TO tick_runs_away"))
    try:
        yield
    finally:
        await restore_tick_runs(db)


async def restore_tick_runs(db: Database) -> None:
    """Put ``tick_runs`` back (idempotent)."""
    async with db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE IF EXISTS tick_runs_away RENAME TO tick_runs"))


async def queue(client: httpx.AsyncClient, admin: Caller, name: str) -> dict[str, Any]:
    """One queue of ``GET /v1/queues``, plus the live workers under ``workers``."""
    response = await client.get("/v1/queues", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    found: dict[str, Any] = next(q for q in body["queues"] if q["name"] == name)
    return {**found, "workers": body["workers"]}


async def test_a_backlog_drains_when_real_workers_start_and_a_dead_letter_is_requeued(
    client: httpx.AsyncClient,
    admin: Caller,
    settings: Settings,
    db: Database,
    runtime: Runtime,
    redis_client: redis.Redis,
    processes: Processes,
    tick_runs_away: None,
) -> None:
    created = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    for number in range(SERVICES):
        name = f"svc-{number}"
        response = await client.post(
            f"/v1/grids/{GRID}/services",
            json={"name": name, "image": "busybox:latest", "stateful": False},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        response = await client.post(
            f"/v1/services/{GRID}/null/{name}/deploy", json={}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    # A tick that fails while its table is away: max_retries=0 sends it to the dead letters.
    runtime.sender.send(
        Job(actor=RETENTION, queue="maintenance", kwargs={"slot": SLOT, "epoch": 1})
    )
    before = set((await queue(client, admin, "deploys"))["workers"])

    async def aged_backlog() -> dict[str, Any] | None:
        deploys = await queue(client, admin, "deploys")
        return deploys if (deploys["oldest_ready_age"] or 0) >= 1.0 else None

    # No worker runs: the deploys wait in the queue and their age grows.
    deploys = await eventually(aged_backlog, deadline=10, what="an aged backlog")
    assert deploys["ready"] == SERVICES and deploys["in_progress"] == 0
    maintenance = await queue(client, admin, "maintenance")
    assert maintenance["ready"] == 1 and maintenance["dead"] == 0

    env = role_env(settings, settings.redis_url)
    started = time.monotonic()
    for name in ("worker-1", "worker-2"):
        processes.master(name, "worker", env)

    ready_at: list[float] = []  # when both workers said they consume (start-up done)

    async def drained() -> dict[str, Any] | None:
        for name in processes.procs:
            assert processes.alive(name), processes.log(name)
        if not ready_at and all("worker consuming" in processes.log(n) for n in processes.procs):
            ready_at.append(time.monotonic())
        deploys, maintenance = (
            await queue(client, admin, "deploys"),
            await queue(client, admin, "maintenance"),
        )
        idle = deploys["ready"] == deploys["in_progress"] == deploys["delayed"] == 0
        return deploys if idle and maintenance["dead"] == 1 else None

    try:
        deploys = await eventually(drained, deadline=180, what="the backlog drained", interval=0.2)
    except BaseException:
        print(processes.tails(), file=sys.stderr)
        raise
    done = time.monotonic()
    start_up = (ready_at[0] if ready_at else done) - started
    print(
        f"\nworkers up {start_up:.1f} s after start; backlog of {SERVICES} deploys and a "
        f"tick drained {done - started - start_up:.2f} s after that"
    )
    assert deploys["oldest_ready_age"] is None
    assert len(set(deploys["workers"]) - before) >= 2  # both workers heartbeat
    async with db.session() as session:
        states = (await session.execute(select(ServiceDeploy.state))).scalars().all()
    assert len(states) == SERVICES and all(s in ("success", "error") for s in states), states

    listing = await client.get("/v1/queues/maintenance/dead", headers=admin.headers)
    assert listing.status_code == 200
    [dead] = listing.json()["messages"]
    assert dead["actor"] == RETENTION and dead["kwargs"] == {"slot": SLOT, "epoch": 1}

    # The operator fixes the cause, then requeues: a real worker runs the job this time.
    await restore_tick_runs(db)
    moved = await client.post(
        f"/v1/queues/maintenance/dead/{dead['message_id']}/requeue", headers=admin.headers
    )
    assert moved.status_code == 200, moved.text

    async def ran() -> bool:
        async with db.session() as session:
            row = await session.get(TickRun, (RETENTION, SLOT))
        return row is not None

    await eventually(ran, deadline=30, what="the requeued job ran")
    maintenance = await queue(client, admin, "maintenance")
    assert maintenance["dead"] == 0 and maintenance["ready"] == 0
