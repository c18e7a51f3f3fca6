"""Who may read a service's containers, stats and metrics (§1: any grid member)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

INVALID = {"error": "invalid_token", "error_description": "Invalid token"}
EXPIRED = {"error": "invalid_token", "error_description": "Token expired"}
DENIED = {"error": "Access denied"}
NOT_FOUND = {"error": "Not found"}
PATHS = ["containers", "stats?sort=memory&limit=2", "metrics"]
EXPECTED: dict[str, tuple[int, Any]] = {
    "no token": (403, INVALID),
    "malformed": (403, INVALID),
    "revoked": (403, INVALID),
    "expired": (403, EXPIRED),
    "non-member": (403, DENIED),
    "foreign grid_admin": (403, DENIED),
    "member": (200, None),
    "grid_admin": (200, None),
    "master_admin": (200, None),
}


@pytest.fixture
async def service(client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]]) -> None:
    """Service ``web`` in grid ``main`` (made by the master_admin)."""
    body = {"name": "web", "image": "busybox", "stateful": False}
    created = await client.post(
        "/v1/grids/main/services", json=body, headers=grid_callers["master_admin"]
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("path", PATHS)
async def test_members_read_and_everyone_else_is_refused(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]], service: None, path: str
) -> None:
    wrong = []
    for caller, (status, body) in EXPECTED.items():
        response = await client.get(
            f"/v1/services/main/null/web/{path}", headers=grid_callers[caller]
        )
        if response.status_code != status or (body is not None and response.json() != body):
            wrong.append((caller, response.status_code, response.text))
    assert wrong == []


@pytest.mark.parametrize("path", PATHS)
async def test_unknown_grid_is_404_for_outsiders_and_unknown_service_for_members(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]], service: None, path: str
) -> None:
    for caller in ("non-member", "member", "master_admin"):
        response = await client.get(
            f"/v1/services/nope/null/web/{path}", headers=grid_callers[caller]
        )
        assert (response.status_code, response.json()) == (404, NOT_FOUND), caller
    for caller in ("member", "master_admin"):
        for missing in ("main/null/nope", "main/stack/web"):
            response = await client.get(
                f"/v1/services/{missing}/{path}", headers=grid_callers[caller]
            )
            assert (response.status_code, response.json()) == (404, NOT_FOUND), (caller, missing)
    empty = await client.get(
        "/v1/services/main/null/web/containers", headers=grid_callers["member"]
    )
    assert empty.json() == {"containers": []}
