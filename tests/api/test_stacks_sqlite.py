"""Embedded mode: a stack's life through the API and its jobs on SQLite.

The agents are tests.core.deploy_support.SimulatedAgents (no Docker): this test is about the
SQL of stacks on SQLite; real agents are covered by tests/e2e/test_stack_lifecycle.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from api.app import create_app
from core.access_tokens import issue_token
from core.config import Settings
from core.rate_limit import MemoryRateLimiter
from core.runtime import Runtime
from core.stack_deploy import run_stack_deploy
from core.stack_jobs import StackEnv
from core.stack_removal import run_stack_removal
from core.vault import Vault
from models import Grid, Stack, StackRemoval, User
from models.db import Database
from models.migrate import upgrade
from tests.core.deploy_support import SimulatedAgents, add_nodes, make_env
from tests.core.test_stack_deploy import BODY, RecordingSender
from tests.fixtures.server import serve


async def test_a_stack_lives_its_life_on_sqlite(
    tmp_path: Path, settings: Settings, vault: Vault
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kontena.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    sender = RecordingSender()
    runtime = Runtime(
        settings=settings,
        db=db,
        vault=vault,
        sender=sender,
        rate_limiter=MemoryRateLimiter(100, 60),
    )
    try:
        async with db.session() as session:
            user = User(email="admin", name="admin")
            session.add(user)
            await session.flush()
            token = issue_token(session, user).access_token
            await session.commit()
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            serve(create_app(runtime)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        ):
            await run_life(client, headers, db, vault)
    finally:
        await db.dispose()


async def run_life(
    client: httpx.AsyncClient, headers: dict[str, str], db: Database, vault: Vault
) -> None:
    """Create, change, deploy (with simulated agents) and remove a stack."""
    assert (
        await client.post("/v1/grids", json={"name": "main"}, headers=headers)
    ).status_code == 201
    async with db.session() as session:
        grid = (await session.execute(select(Grid))).scalar_one()
    await add_nodes(db, grid, "node-1")
    created = await client.post("/v1/grids/main/stacks", json=BODY, headers=headers)
    assert created.status_code == 201, created.text
    changed: dict[str, Any] = {**BODY, "version": "2"}
    updated = await client.put("/v1/stacks/main/app", json=changed, headers=headers)
    assert updated.status_code == 200 and updated.json()["revision"] == 2, updated.text
    deploy = (await client.post("/v1/stacks/main/app/deploy", headers=headers)).json()
    assert deploy["state"] == "created"
    env = StackEnv(
        deploy=make_env(db, vault, SimulatedAgents(lambda: db, vault)),
        sender=RecordingSender(),
        poll_interval=0.02,
    )
    assert await run_stack_deploy(env, deploy["id"], 5)
    done = (await client.get(f"/v1/stacks/main/app/deploys/{deploy['id']}", headers=headers)).json()
    assert done["state"] == "success", done
    assert [d["service_id"] for d in done["service_deploys"]] == ["main/app/db", "main/app/web"]
    stack = (await client.get("/v1/stacks/main/app", headers=headers)).json()
    assert stack["state"] == "running"
    events = (await client.get("/v1/stacks/main/app/event_logs", headers=headers)).json()["logs"]
    assert "stack:deploy" in {entry["type"] for entry in events}
    assert (await client.delete("/v1/stacks/main/app", headers=headers)).status_code == 200
    async with db.session() as session:
        removal = (await session.execute(select(StackRemoval))).scalar_one()
    assert await run_stack_removal(env, removal.id, 5)
    async with db.session() as session:
        assert (await session.execute(select(Stack))).first() is None
