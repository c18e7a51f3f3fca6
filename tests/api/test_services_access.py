"""Who may call each services endpoint (§1): every endpoint, every kind of caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import delete, func, select

from core import services
from core.auth import Principal
from core.service_spec import ServiceCreate
from core.vault import Vault
from models import AccessToken, Grid, Service, ServiceDeploy, ServiceInstance, User
from models.db import Database
from tests.fixtures.callers import KINDS, MASTER_ADMIN, REFUSED, caller_headers, invalid_token_body
from tests.fixtures.grid_rows import create_grid_row
from tests.fixtures.service_rows import queued_jobs

DENIED = {"error": "Access denied"}
NOT_FOUND = {"error": "Not found"}
SVC = "/v1/services/{grid}/null/web"

# (method, path, body, status for a member): every member may use all of them.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/v1/grids/{grid}/services", None, 200),
    ("POST", "/v1/grids/{grid}/services", {"name": "new", "image": "x", "stateful": False}, 201),
    ("GET", SVC, None, 200),
    ("PUT", SVC, {"image": "busybox:2"}, 200),
    ("DELETE", SVC, None, 200),
    ("POST", SVC + "/deploy", {"force": True}, 200),
    ("POST", SVC + "/scale", {"instances": 4}, 200),
    ("POST", SVC + "/start", None, 200),
    ("POST", SVC + "/stop", None, 200),
    ("POST", SVC + "/restart", None, 200),
    ("GET", SVC + "/deploys", None, 200),
    ("GET", SVC + "/deploys/{deploy}", None, 200),
    ("GET", SVC + "/instances", None, 200),
    ("GET", SVC + "/instances/{instance}", None, 200),
]
IDS = [f"{method} {path}" for method, path, _b, _s in ENDPOINTS]


async def _seed(db: Database, vault: Vault) -> dict[str, str]:
    """Grid ``main`` with service ``web`` (one instance, one deploy); returns their ids."""
    grid = await create_grid_row(db, vault, "main")
    async with db.session() as session:
        user = User(email="owner@example.com", name="owner")
        session.add(user)
        await session.flush()
        principal = Principal(user=user, token=AccessToken(), grid_ids=frozenset({grid.id}))
        data = ServiceCreate(name="web", image="busybox", stateful=False)
        row = await services.create_service(session, principal, grid, data)
        deploy = ServiceDeploy(service_id=row.id, grid_id=grid.id, instance_deploys=[])
        instance = ServiceInstance(service_id=row.id, instance_number=1)
        session.add_all([deploy, instance])
        await session.commit()
        return {"deploy": deploy.id, "instance": instance.id}


async def _reset(db: Database, vault: Vault) -> dict[str, str]:
    async with db.session() as session:
        await session.execute(delete(Grid))
        await session.execute(delete(User).where(User.email == "owner@example.com"))
        await session.commit()
    return await _seed(db, vault)


async def _state(db: Database) -> tuple[Any, ...]:
    """What a refused request must leave alone."""
    async with db.session() as session:
        rows = (await session.execute(select(Service).order_by(Service.name))).scalars().all()
        deploys = (await session.execute(select(func.count(ServiceDeploy.id)))).scalar_one()
        desired = (await session.execute(select(ServiceInstance.desired_state))).scalars().all()
    return (
        [(r.name, r.image, r.state, r.instances, r.revision) for r in rows],
        deploys,
        desired,
    )


@pytest.mark.parametrize(("method", "path", "body", "ok"), ENDPOINTS, ids=IDS)
async def test_only_members_reach_services(
    client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    make_user: Any,
    redis_client: redis.Redis,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    ok: int,
) -> None:
    for kind in KINDS:
        ids = await _reset(db, vault)
        redis_client.flushdb()
        headers = await caller_headers(kind, make_user, db, grid="main")
        before = await _state(db)
        url = path.format(grid="main", **ids)
        response = await client.request(method, url, json=body, headers=headers)
        if kind in REFUSED:
            expected: tuple[int, Any] = (403, invalid_token_body(kind))
        elif kind == "non-admin user":  # authenticated, not a member of `main`
            expected = (403, DENIED)
        else:
            assert kind in ("grid member", MASTER_ADMIN)
            assert response.status_code == ok, (kind, response.text)
            continue
        assert (response.status_code, response.json()) == expected, kind
        assert await _state(db) == before, kind
        assert queued_jobs(redis_client) == [], kind


async def test_an_unknown_grid_is_404_even_for_outsiders(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any
) -> None:
    ids = await _seed(db, vault)
    callers = [
        await caller_headers(kind, make_user, db) for kind in ("non-admin user", MASTER_ADMIN)
    ]
    for method, path, body, _ok in ENDPOINTS:
        for headers in callers:
            url = path.format(grid="missing", **ids)
            response = await client.request(method, url, json=body, headers=headers)
            assert (response.status_code, response.json()) == (404, NOT_FOUND), path


async def test_an_unknown_service_is_404_for_members_and_403_for_outsiders(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any
) -> None:
    ids = await _seed(db, vault)
    member = await caller_headers("grid member", make_user, db, grid="main")
    outsider = await caller_headers("non-admin user", make_user, db)
    for method, path, body, _ok in ENDPOINTS:
        if not path.startswith(SVC):
            continue
        url = path.replace("/web", "/nope").format(grid="main", **ids)
        response = await client.request(method, url, json=body, headers=member)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), url
        # Outsiders learn nothing about which services exist in a grid they cannot see.
        response = await client.request(method, url, json=body, headers=outsider)
        assert (response.status_code, response.json()) == (403, DENIED), url
