"""The vault end to end: nothing plain at rest, `vault rotate` as a real process, wrong keys."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
from sqlalchemy import select

from api.app import create_app
from core import config_store
from core.config import Settings
from core.registries import registry_credentials_for_image
from core.runtime import Runtime
from core.vault import MasterKey, Vault
from core.vault_check import verify_vault
from core.vault_columns import VAULT_COLUMNS
from models import Grid
from models.db import Database
from tests.conftest import TEST_VAULT_KEY
from tests.e2e.test_cli import kontena_master
from tests.fixtures.raw_rows import assert_nowhere_in_database
from tests.fixtures.server import serve

NEW_KEY = "rotated-vault-key-9876543210fedcba"
WRONG = "not-the-key-this-master-was-started-with"
WRONG_KEY_MESSAGE = "the vault key does not decrypt this master's data"
PLAIN = {
    "grid token": "grid-join-token-plaintext-0123456789",
    "node token": "node-token-plaintext-abcdefghijkl",
    "config secret": "oauth-client-secret-plaintext",
    "secret": "secret-value-plaintext",
    "registry password": "registry-password-plaintext",
}


async def _populate(client: httpx.AsyncClient, admin: Any, db: Database, vault: Vault) -> None:
    """One value of every vault-encrypted kind, written through the API."""
    registry = {"url": "http://r.local:5000", "username": "u"}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/grids", {"name": "main", "token": PLAIN["grid token"]}),
        ("POST", "/v1/grids/main/nodes", {"name": "n1", "token": PLAIN["node token"]}),
        ("PATCH", "/v1/config", {"oauth2.client_secret": PLAIN["config secret"]}),
        ("POST", "/v1/grids/main/secrets", {"name": "S", "value": PLAIN["secret"]}),
        (
            "POST",
            "/v1/grids/main/external_registries",
            {**registry, "password": PLAIN["registry password"]},
        ),
    ]
    for method, path, body in calls:  # in order: each needs the grid
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code in (200, 201), response.text
    await verify_vault(db, vault)  # writes the start-up canary, as `api` and `up` do


async def _vault_values(db: Database) -> dict[tuple[str, str], str]:
    """Every stored vault value, keyed by (column label, row id)."""
    values: dict[tuple[str, str], str] = {}
    async with db.session() as session:
        for column in VAULT_COLUMNS:
            for row in (await session.execute(column.select())).mappings():
                values[(column.label, str(row["id"]))] = str(row["value"])
    return values


def _rotate(settings: Settings, *, key: str = NEW_KEY, old: str = TEST_VAULT_KEY) -> Any:
    return kontena_master(
        settings,
        "vault",
        "rotate",
        "--batch-size",
        "1",
        KONTENA_VAULT_KEY=key,
        KONTENA_VAULT_OLD_KEYS=old,
    )


async def test_no_plaintext_at_rest_and_rotation_rewraps_every_value(
    client: httpx.AsyncClient,
    admin: Any,
    db: Database,
    vault: Vault,
    runtime: Runtime,
    settings: Settings,
) -> None:
    await _populate(client, admin, db, vault)
    await assert_nowhere_in_database(db, *PLAIN.values())
    before = await _vault_values(db)
    labels = {label for label, _id in before}
    assert labels == {c.label for c in VAULT_COLUMNS}, "every vault column holds a value"

    result = await asyncio.to_thread(_rotate, settings)
    assert result.returncode == 0, result.stderr
    assert "secrets: 1 re-wrapped, 0 already current" in result.stdout
    assert "vault rotation complete" in result.stdout
    for plain in PLAIN.values():
        assert plain not in result.stdout + result.stderr

    after = await _vault_values(db)
    assert after.keys() == before.keys()
    new = MasterKey.from_secret(NEW_KEY)
    for key, value in after.items():
        assert value != before[key], key
        assert value.startswith(f"kv1:{new.key_id}:"), key
    await assert_nowhere_in_database(db, *PLAIN.values())

    # A master that knows only the new key reads everything back.
    only_new = Vault(new)
    await verify_vault(db, only_new)
    rotated = dataclasses.replace(runtime, vault=only_new)
    async with serve(create_app(rotated)) as url, httpx.AsyncClient(base_url=url) as api:
        h = admin.headers
        grid = (await api.get("/v1/grids/main", headers=h)).json()
        assert grid["token"] == PLAIN["grid token"]
        node = (await api.get("/v1/nodes/main/n1/token", headers=h)).json()
        assert node["token"] == PLAIN["node token"]
        secret = (await api.get("/v1/secrets/main/S", headers=h)).json()
        assert secret["value"] == PLAIN["secret"]
    async with db.session() as session:
        stored = await config_store.get_value(session, only_new, "oauth2.client_secret")
        assert stored == PLAIN["config secret"]
        grid_row = (await session.execute(select(Grid))).scalar_one()
        creds = await registry_credentials_for_image(session, only_new, grid_row, "r.local:5000/a")
        assert creds is not None and creds["password"] == PLAIN["registry password"]

    # Idempotent: a second run finds everything current and writes nothing.
    again = await asyncio.to_thread(_rotate, settings)
    assert again.returncode == 0, again.stderr
    assert "secrets: 0 re-wrapped, 1 already current" in again.stdout
    assert await _vault_values(db) == after


async def test_processes_refuse_to_start_with_the_wrong_key(
    client: httpx.AsyncClient, admin: Any, db: Database, vault: Vault, settings: Settings
) -> None:
    await _populate(client, admin, db, vault)
    for role in ("api", "worker", "scheduler"):
        result = await asyncio.to_thread(
            kontena_master,
            settings,
            role,
            KONTENA_VAULT_KEY=WRONG,
            KONTENA_REDIS_URL=settings.redis_url,
        )
        assert result.returncode == 2, (role, result.stderr)
        assert WRONG_KEY_MESSAGE in result.stderr, role
        assert "Traceback" not in result.stderr, role
    # Rotating to a new key without naming the old one cannot open the data: a clear error.
    lost = await asyncio.to_thread(_rotate, settings, old="")
    assert lost.returncode == 2
    assert WRONG_KEY_MESSAGE in lost.stderr
