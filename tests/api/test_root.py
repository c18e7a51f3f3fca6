"""The banner, ping, version header and Kontena's error shapes for unknown paths."""

from __future__ import annotations

import httpx

from core.runtime import VERSION


async def test_ping_answers_pong_with_version_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/ping")
    assert response.status_code == 200
    assert response.json() == {"message": "pong"}
    assert response.headers["x-kontena-version"] == VERSION


async def test_banner(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.json()["name"] == "Kontena Master"


async def test_unknown_path_is_not_found_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}
    assert response.headers["x-kontena-version"] == VERSION


async def test_password_auth_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth", json={"username": "a", "password": "b"})
    assert response.status_code == 403


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Kontena Master API"
    assert (await client.get("/docs")).status_code == 200
