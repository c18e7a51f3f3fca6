"""Who may read container logs and service event logs (§1): members of the grid only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_grids_access import CALLERS, DENIED, EXPIRED, INVALID, NOT_FOUND, expect
from tests.conftest import Caller
from tests.fixtures.service_rows import create_service

OK = (200, None)
OUTSIDERS = {"non-member": (403, DENIED), "foreign grid_admin": (403, DENIED)}
PATHS = [
    "/v1/grids/main/container_logs",
    "/v1/services/main/null/web/container_logs",
    "/v1/services/main/null/web/event_logs",
]
MISSING = [
    "/v1/grids/missing/container_logs",
    "/v1/services/missing/null/web/container_logs",
    "/v1/services/missing/null/web/event_logs",
]


@pytest.mark.parametrize(
    ("path", "rows"),
    [pytest.param(p, expect(OUTSIDERS, OK), id=p) for p in PATHS]
    + [pytest.param(p, expect({}, (404, NOT_FOUND)), id=p) for p in MISSING],
)
async def test_access(
    client: httpx.AsyncClient,
    admin: Caller,
    grid_callers: dict[str, dict[str, str]],
    path: str,
    rows: list[tuple[str, int, Any]],
) -> None:
    await create_service(client, admin.headers, name="web")
    assert [caller for caller, _s, _b in rows] == CALLERS
    wrong = []
    for caller, status, expected in rows:
        response = await client.get(path, headers=grid_callers[caller])
        if response.status_code != status or (expected is not None and response.json() != expected):
            wrong.append((caller, response.status_code, response.text))
        if status == 200:
            assert response.json() == {"logs": []} or "logs" in response.json()
        if expected in (INVALID, EXPIRED):
            assert "www-authenticate" in response.headers
    assert wrong == []
