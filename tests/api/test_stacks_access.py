"""Who may call each stack endpoint (§1): grid members, as for services; every kind of caller."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select

from models import Service, Stack, StackRemoval
from models.db import Database
from tests.api.test_grids_access import DENIED, EXPIRED, INVALID, NOT_FOUND, OK, expect

BODY: dict[str, Any] = {
    "name": "app",
    "stack": "user/app",
    "version": "1",
    "source": "",
    "services": [{"name": "web", "image": "busybox", "stateful": False}],
}
# Grid members may do everything; callers outside the grid are refused before any lookup.
OUTSIDERS = {"non-member": (403, DENIED), "foreign grid_admin": (403, DENIED)}
NEW = {**copy.deepcopy(BODY), "name": "new"}
CASES: list[tuple[str, str, dict[str, Any] | None, list[tuple[str, int, Any]]]] = [
    ("GET", "/v1/grids/main/stacks", None, expect(OUTSIDERS, OK)),
    ("POST", "/v1/grids/main/stacks", NEW, expect(OUTSIDERS, (201, None))),
    ("GET", "/v1/stacks/main/app", None, expect(OUTSIDERS, OK)),
    ("PUT", "/v1/stacks/main/app", BODY, expect(OUTSIDERS, OK)),
    ("PATCH", "/v1/stacks/main/app", {"labels": ["a=b"]}, expect(OUTSIDERS, OK)),
    ("DELETE", "/v1/stacks/main/app", None, expect(OUTSIDERS, (200, {}))),
    ("POST", "/v1/stacks/main/app/deploy", None, expect(OUTSIDERS, OK)),
    ("POST", "/v1/stacks/main/app/stop", None, expect(OUTSIDERS, (200, {}))),
    ("POST", "/v1/stacks/main/app/restart", None, expect(OUTSIDERS, (200, {}))),
    ("GET", "/v1/stacks/main/app/deploys", None, expect(OUTSIDERS, OK)),
    ("GET", "/v1/stacks/main/app/deploys/nope", None, expect(OUTSIDERS, (404, NOT_FOUND))),
    ("GET", "/v1/stacks/main/app/revisions", None, expect(OUTSIDERS, OK)),
    ("GET", "/v1/stacks/main/app/event_logs", None, expect(OUTSIDERS, OK)),
    # Unknown grids are 404 for everyone authenticated; unknown stacks 404 {} for members.
    ("GET", "/v1/grids/missing/stacks", None, expect({}, (404, NOT_FOUND))),
    ("GET", "/v1/stacks/missing/app", None, expect({}, (404, NOT_FOUND))),
    ("GET", "/v1/stacks/main/nope", None, expect(OUTSIDERS, (404, {}))),
]


async def reset_stack(client: httpx.AsyncClient, db: Database, headers: dict[str, str]) -> None:
    """Exactly stack ``app`` in grid ``main``, made by the master admin."""
    async with db.session() as session:
        await session.execute(delete(Service))
        await session.execute(delete(Stack))
        await session.execute(delete(StackRemoval))
        await session.commit()
    response = await client.post("/v1/grids/main/stacks", json=BODY, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "rows"),
    [pytest.param(*case, id=f"{case[0]} {case[1]}") for case in CASES],
)
async def test_access(
    client: httpx.AsyncClient,
    grid_callers: dict[str, dict[str, str]],
    db: Database,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    rows: list[tuple[str, int, Any]],
) -> None:
    wrong = []
    for caller, status, expected in rows:
        await reset_stack(client, db, grid_callers["master_admin"])
        response = await client.request(method, path, json=body, headers=grid_callers[caller])
        if response.status_code != status or (expected is not None and response.json() != expected):
            wrong.append((caller, response.status_code, response.text))
        if expected in (INVALID, EXPIRED):
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="kontena_master", error="invalid_token"')
    assert wrong == []


async def test_refused_callers_change_nothing(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]], db: Database
) -> None:
    await reset_stack(client, db, grid_callers["master_admin"])
    changed = {**copy.deepcopy(BODY), "version": "2"}
    for caller in ("no token", "expired", "non-member", "foreign grid_admin"):
        headers = grid_callers[caller]
        await client.post("/v1/grids/main/stacks", json=NEW, headers=headers)
        await client.put("/v1/stacks/main/app", json=changed, headers=headers)
        await client.post("/v1/stacks/main/app/deploy", headers=headers)
        await client.post("/v1/stacks/main/app/stop", headers=headers)
        await client.delete("/v1/stacks/main/app", headers=headers)
    body = (await client.get("/v1/stacks/main/app", headers=grid_callers["master_admin"])).json()
    assert (body["version"], body["revision"], body["state"]) == ("1", 1, "initialized")
    async with db.session() as session:
        stacks = (await session.execute(select(func.count()).select_from(Stack))).scalar_one()
    assert stacks == 1
