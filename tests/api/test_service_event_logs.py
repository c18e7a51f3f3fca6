"""``GET /v1/services/:grid/:stack/:service/event_logs``: the service's own events, paged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from models import EventLog, Grid
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.service_rows import create_service

PATH = "/v1/services/main/null/web/event_logs"


async def get_logs(client: httpx.AsyncClient, admin: Caller, **params: Any) -> list[Any]:
    response = await client.get(PATH, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    logs: list[Any] = response.json()["logs"]
    return logs


async def test_only_this_services_events_with_deploys_paged_like_kontena(
    client: httpx.AsyncClient, admin: Caller, db: Database
) -> None:
    assert (await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)).is_success
    await create_service(client, admin.headers, name="web")
    await create_service(client, admin.headers, name="db")
    deploy = await client.post(f"{PATH[: -len('/event_logs')]}/deploy", headers=admin.headers)
    assert deploy.status_code == 200, deploy.text
    async with db.session() as session:
        grid_id = (await session.execute(select(Grid.id).where(Grid.name == "main"))).scalar_one()
        # What the deployer records (core.deployer._event): grid, stack and service name.
        base = utcnow() + timedelta(seconds=1)
        for i, message in enumerate(("deploy started", "deployed")):
            session.add(
                EventLog(
                    grid_id=grid_id,
                    type="service:deploy",
                    message=f"service main/null/web {message}",
                    stack="null",
                    service="web",
                    created_at=base + timedelta(seconds=i),
                )
            )
        # A namesake in another stack is another service.
        session.add(
            EventLog(grid_id=grid_id, type="service:deploy", message="x", stack="s", service="web")
        )
        await session.commit()

    events = await get_logs(client, admin)
    assert [e["type"] for e in events] == [
        "service:create",
        "service:deploy_request",
        "service:deploy",
        "service:deploy",
    ]
    assert events[-1]["message"] == "service main/null/web deployed"
    assert {"id": "main/null/web", "type": "service"} in events[-1]["relationships"]
    assert not [e for e in events if "main/null/db" in e["message"]]
    newest = await get_logs(client, admin, limit=1)
    assert [e["id"] for e in newest] == [events[-1]["id"]]
    after = await get_logs(client, admin, **{"from": events[1]["id"]})
    assert [e["id"] for e in after] == [e["id"] for e in events[2:]]
    since = await get_logs(client, admin, since=(base + timedelta(milliseconds=500)).isoformat())
    assert [e["message"] for e in since] == ["service main/null/web deployed"]
