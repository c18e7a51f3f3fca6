"""Who may call each grid endpoint (§1): every endpoint by every kind of caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

INVALID = {"error": "invalid_token", "error_description": "Invalid token"}
EXPIRED = {"error": "invalid_token", "error_description": "Token expired"}
NOT_ALLOWED = {"error": {"user": "Operation not allowed"}}
DENIED = {"error": "Access denied"}
NOT_FOUND = {"error": "Not found"}

CALLERS = [
    "no token",
    "malformed",
    "expired",
    "revoked",
    "member",
    "non-member",
    "grid_admin",
    "foreign grid_admin",
    "master_admin",
]


def expect(
    allowed: dict[str, tuple[int, Any]], default: tuple[int, Any]
) -> list[tuple[str, int, Any]]:
    """One row per caller: the token failures are common to every endpoint."""
    rows: list[tuple[str, int, Any]] = []
    for caller in CALLERS:
        if caller in ("no token", "malformed", "revoked"):
            rows.append((caller, 403, INVALID))
        elif caller == "expired":
            rows.append((caller, 403, EXPIRED))
        else:
            status, body = allowed.get(caller, default)
            rows.append((caller, status, body))
    return rows


OK = (200, None)
CASES: list[tuple[str, str, dict[str, Any] | None, list[tuple[str, int, Any]]]] = [
    ("GET", "/v1/grids", None, expect({}, OK)),
    (
        "POST",
        "/v1/grids",
        {"name": "new-grid"},
        expect({"master_admin": (201, None)}, (422, NOT_ALLOWED)),
    ),
    (
        "GET",
        "/v1/grids/main",
        None,
        expect({"non-member": (403, DENIED), "foreign grid_admin": (403, DENIED)}, OK),
    ),
    (
        "PUT",
        "/v1/grids/main",
        {"default_affinity": ["a==b"]},
        expect(
            {
                "member": (422, NOT_ALLOWED),
                "non-member": (403, DENIED),
                "foreign grid_admin": (403, DENIED),
            },
            OK,
        ),
    ),
    (
        "DELETE",
        "/v1/grids/main",
        None,
        expect(
            {
                "master_admin": (200, {}),
                "non-member": (403, DENIED),
                "foreign grid_admin": (403, DENIED),
            },
            (422, NOT_ALLOWED),
        ),
    ),
    (
        "GET",
        "/v1/grids/main/event_logs",
        None,
        expect({"non-member": (403, DENIED), "foreign grid_admin": (403, DENIED)}, OK),
    ),
    # Unknown grids are 404 for everyone who is authenticated, before any role check.
    ("GET", "/v1/grids/missing", None, expect({}, (404, NOT_FOUND))),
    ("PUT", "/v1/grids/missing", {}, expect({}, (404, NOT_FOUND))),
    ("DELETE", "/v1/grids/missing", None, expect({}, (404, NOT_FOUND))),
    ("GET", "/v1/grids/missing/event_logs", None, expect({}, (404, NOT_FOUND))),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "rows"),
    [pytest.param(*case, id=f"{case[0]} {case[1]}") for case in CASES],
)
async def test_access(
    client: httpx.AsyncClient,
    grid_callers: dict[str, dict[str, str]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    rows: list[tuple[str, int, Any]],
) -> None:
    # Callers run in CALLERS order; the master_admin (who may delete the grid) comes last.
    wrong = []
    for caller, status, expected in rows:
        response = await client.request(method, path, json=body, headers=grid_callers[caller])
        if response.status_code != status or (expected is not None and response.json() != expected):
            wrong.append((caller, response.status_code, response.text))
        if status == 403 and expected in (INVALID, EXPIRED):
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="kontena_master", error="invalid_token"')
            assert expected["error_description"] in challenge
    assert wrong == []


async def test_list_shows_each_caller_its_own_grids(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]]
) -> None:
    seen = {}
    for caller in ("member", "non-member", "grid_admin", "master_admin"):
        response = await client.get("/v1/grids", headers=grid_callers[caller])
        seen[caller] = [g["name"] for g in response.json()["grids"]]
    assert seen == {
        "member": ["main"],
        "non-member": ["other"],
        "grid_admin": ["main"],
        "master_admin": ["main", "other"],
    }
