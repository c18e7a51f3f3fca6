"""`kontena-master` administration commands run as real processes against PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from core.config import Settings


def kontena_master(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script's module with this run's database."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={
            **os.environ,
            "KONTENA_DATABASE_URL": settings.resolved_database_url,
            "KONTENA_VAULT_KEY": settings.vault_key,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_is_idempotent(settings: Settings, db: object) -> None:
    result = kontena_master(settings, "migrate")
    assert result.returncode == 0, result.stderr
    assert "database migrated" in result.stdout


async def test_token_create_prints_a_working_admin_token(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    only_token = kontena_master(settings, "token", "create", "--token")
    assert only_token.returncode == 0, only_token.stderr
    token = only_token.stdout.strip()
    assert len(token) == 64
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == "admin"

    expiring = kontena_master(settings, "token", "create", "--expires-in", "60")
    body = json.loads(expiring.stdout)
    assert body["expires_in"] == 60 and body["refresh_token"]
    grids = await client.get(
        "/v1/grids", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert grids.status_code == 200


def test_distributed_roles_refuse_to_start_without_redis(settings: Settings) -> None:
    for role in ("api", "worker", "scheduler"):
        result = kontena_master(settings, role, KONTENA_REDIS_URL="")
        assert result.returncode != 0
        assert "KONTENA_REDIS_URL is not set" in result.stderr


def test_api_refuses_to_start_without_a_vault_key(settings: Settings, db: object) -> None:
    result = kontena_master(
        settings, "api", KONTENA_VAULT_KEY="", KONTENA_REDIS_URL=settings.redis_url
    )
    assert result.returncode == 2
    assert "KONTENA_VAULT_KEY is not set" in result.stderr
