"""``/v1/audit_logs`` and ``/v1/grids/:name/audit_log``: authorization, shape, limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from core.vault import Vault
from models import AuditLog, Grid
from models.db import Database
from tests.fixtures.callers import (
    KINDS,
    MASTER_ADMIN,
    PLAIN_USERS,
    REFUSED,
    caller_headers,
    invalid_token_body,
)
from tests.fixtures.grid_rows import create_grid_row


async def add_entries(db: Database, count: int, *, grid: Grid | None = None) -> None:
    """Insert ``count`` audit entries numbered 1..count (``resource_id``) in that order."""
    rows = [
        {
            "grid_id": grid.id if grid else None,
            "grid_name": grid.name if grid else None,
            "user_id": "5a0000000000000000000001",
            "user_email": "someone@example.com",
            "resource_type": "grid_service",
            "resource_id": str(n),
            "resource_name": f"svc-{n}",
            "event_name": "deploy",
            "source_ip": "10.0.0.1",
            "user_agent": "kontena-cli/1.5.2",
            "request_parameters": {},
        }
        for n in range(1, count + 1)
    ]
    async with db.session() as session:
        await session.execute(insert(AuditLog), rows)
        await session.commit()


def numbers(response: httpx.Response) -> list[int]:
    """The ``resource_id`` numbers of a listing, in the order returned."""
    return [int(log["resource_id"]) for log in response.json()["logs"]]


@pytest.fixture
async def admin_headers(make_user: Any) -> dict[str, str]:
    """A user holding the master_admin role."""
    return dict((await make_user("root@example.com", roles=("master_admin",))).headers)


@pytest.mark.parametrize("kind", KINDS)
async def test_global_audit_log_is_for_master_admins(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any, kind: str
) -> None:
    await create_grid_row(db, vault, "alpha")
    await add_entries(db, 2)
    headers = await caller_headers(kind, make_user, db, grid="alpha")

    response = await client.get("/v1/audit_logs", headers=headers)

    if kind in REFUSED:
        assert response.status_code == 403
        assert response.json() == invalid_token_body(kind)
    elif kind in PLAIN_USERS:
        assert response.status_code == 403
        assert response.json() == {"error": "Access denied"}
    else:
        assert kind == MASTER_ADMIN
        assert response.status_code == 200
        assert numbers(response) == [1, 2]


@pytest.mark.parametrize("kind", KINDS)
async def test_grid_audit_log_is_for_members(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any, kind: str
) -> None:
    grid = await create_grid_row(db, vault, "alpha")
    await add_entries(db, 2, grid=grid)
    headers = await caller_headers(kind, make_user, db, grid="alpha")

    response = await client.get("/v1/grids/alpha/audit_log", headers=headers)

    if kind in REFUSED:
        assert response.status_code == 403
        assert response.json() == invalid_token_body(kind)
    elif kind == "non-admin user":
        assert response.status_code == 403
        assert response.json() == {"error": "Access denied"}
    else:
        assert kind in ("grid member", MASTER_ADMIN)
        assert response.status_code == 200
        assert numbers(response) == [1, 2]


@pytest.mark.parametrize("kind", ["non-admin user", "grid member", MASTER_ADMIN])
async def test_unknown_grid_is_404_before_403(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any, kind: str
) -> None:
    await create_grid_row(db, vault, "alpha")
    headers = await caller_headers(kind, make_user, db, grid="alpha")
    response = await client.get("/v1/grids/nope/audit_log", headers=headers)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}


async def test_member_sees_only_their_grid(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any
) -> None:
    alpha = await create_grid_row(db, vault, "alpha")
    beta = await create_grid_row(db, vault, "beta")
    await add_entries(db, 3, grid=alpha)
    await add_entries(db, 2, grid=beta)
    await add_entries(db, 1)
    member = await make_user("member@example.com", grids=("alpha",))

    own = await client.get("/v1/grids/alpha/audit_log", headers=member.headers)
    assert own.status_code == 200
    assert numbers(own) == [1, 2, 3]
    assert {log["grid"] for log in own.json()["logs"]} == {"alpha"}
    foreign = await client.get("/v1/grids/beta/audit_log", headers=member.headers)
    assert foreign.status_code == 403
    assert foreign.json() == {"error": "Access denied"}


async def test_entry_shape(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    grid = await create_grid_row(db, vault, "alpha")
    async with db.session() as session:
        session.add(
            AuditLog(
                grid_id=grid.id,
                grid_name="alpha",
                user_id="5a0000000000000000000001",
                user_email="someone@example.com",
                resource_type="grid_service",
                resource_id="alpha/null/web",
                resource_name="web",
                event_name="deploy",
                source_ip="10.0.0.1",
                user_agent="kontena-cli/1.5.2",
                request_body='{"secret":"not shown"}',
                created_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            )
        )
        session.add(AuditLog(resource_type="config", event_name="destroy_all"))
        await session.commit()

    response = await client.get("/v1/audit_logs", headers=admin_headers)

    assert response.status_code == 200
    logs = response.json()["logs"]
    assert logs[0] == {
        "time": "2024-05-06T07:08:09.123Z",
        "grid": "alpha",
        "grid_id": grid.id,
        "service": "",
        "resource_type": "grid_service",
        "resource_name": "web",
        "resource_id": "alpha/null/web",
        "event_name": "deploy",
        "event_status": "success",
        "source_ip": "10.0.0.1",
        "user_agent": "kontena-cli/1.5.2",
        "user_identity": {"id": "5a0000000000000000000001", "email": "someone@example.com"},
    }
    anonymous = logs[1]
    assert anonymous["grid"] is None
    assert anonymous["grid_id"] == ""
    assert anonymous["resource_id"] == ""
    assert anonymous["user_identity"] == {"id": "", "email": None}


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, list(range(11, 511))),
        ("3", [508, 509, 510]),
        ("1", [510]),
        ("3000", list(range(1, 511))),
        ("0", list(range(11, 511))),
        ("-5", list(range(11, 511))),
        ("3001", list(range(11, 511))),
        ("abc", list(range(11, 511))),
        ("", list(range(11, 511))),
        ("2abc", [509, 510]),  # read like Ruby's to_i, as the original did
    ],
)
async def test_limit_returns_newest_entries_oldest_first(
    client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    admin_headers: dict[str, str],
    limit: str | None,
    expected: list[int],
) -> None:
    grid = await create_grid_row(db, vault, "alpha")
    await add_entries(db, 510, grid=grid)
    params = {} if limit is None else {"limit": limit}

    for path in ("/v1/audit_logs", "/v1/grids/alpha/audit_log"):
        response = await client.get(path, params=params, headers=admin_headers)
        assert response.status_code == 200
        assert numbers(response) == expected, path


async def test_config_change_shows_up_in_the_global_log(
    client: httpx.AsyncClient, make_user: Any
) -> None:
    root = await make_user("root@example.com", roles=("master_admin",))
    headers = {**root.headers, "User-Agent": "kontena-cli/1.5.2"}
    await client.patch("/v1/config", json={"server.name": "k"}, headers=headers)

    logs = (await client.get("/v1/audit_logs", headers=headers)).json()["logs"]

    assert len(logs) == 1
    log = logs[0]
    assert log["resource_type"] == "config"
    assert log["resource_name"] == "config"
    assert log["resource_id"] == "server.name"
    assert log["event_name"] == "modify"
    assert log["source_ip"] == "127.0.0.1"
    assert log["user_agent"] == "kontena-cli/1.5.2"
    assert log["user_identity"] == {"id": root.user.id, "email": "root@example.com"}
    assert log["time"].endswith("Z")
