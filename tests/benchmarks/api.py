"""Benchmark: ``GET /v1/grids`` (100 grids) against a bare Litestar endpoint, served the same way.

Run: ``uv run python -m tests.benchmarks.api`` (uses KONTENA_TEST_DATABASE_URL and
KONTENA_TEST_REDIS_URL when set, else a temporary SQLite file). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from core.access_tokens import issue_token
from core.bootstrap import ensure_local_admin
from core.tokens import digest, new_grid_token
from core.vault import MasterKey, Vault
from models import Grid, grid_users
from models.db import Database
from models.migrate import upgrade
from tests.benchmarks.loadgen import LoadResult, run_load
from tests.fixtures.server import free_port

VAULT_KEY = "benchmark-vault-key-0123456789"


async def seed(url: str, grids: int) -> str:
    """Create ``grids`` grids the admin belongs to; return an admin token."""
    db = Database(url)
    vault = Vault(MasterKey.from_secret(VAULT_KEY))
    async with db.session() as session:
        admin, _ = await ensure_local_admin(session)
        rows = []
        for i in range(grids):
            token = new_grid_token()
            name = f"bench-{i:03d}"
            rows.append(
                Grid(
                    name=name,
                    token_hash=digest(token),
                    token_encrypted=vault.encrypt(token, context=f"grid:{name}"),
                )
            )
        session.add_all(rows)
        await session.flush()
        await session.execute(
            grid_users.insert(), [{"grid_id": g.id, "user_id": admin.id} for g in rows]
        )
        issued = issue_token(session, admin)
        await session.commit()
    await db.dispose()
    assert issued.access_token
    return issued.access_token


@contextmanager
def server(kind: str, env: dict[str, str]) -> Iterator[int]:
    """Start ``tests.benchmarks.serve`` in a subprocess and wait until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.serve", kind, str(port)], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(
                    f"http://127.0.0.1:{port}/v1/ping"
                    if kind == "api"
                    else f"http://127.0.0.1:{port}/bare",
                    timeout=1,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def row(name: str, result: LoadResult) -> str:
    """One line of the results table."""
    return (
        f"| {name} | {result.rps:,.0f} | {result.p50:.1f} | {result.percentile(99):.1f} "
        f"| {result.errors} |"
    )


def main() -> None:
    """Run both targets and print the comparison table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--grids", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("KONTENA_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        token = asyncio.run(seed(url, args.grids))
        env = {
            **os.environ,
            "KONTENA_DATABASE_URL": url,
            "KONTENA_REDIS_URL": os.environ.get("KONTENA_TEST_REDIS_URL", ""),
            "KONTENA_VAULT_KEY": VAULT_KEY,
            "KONTENA_DATA_DIR": tmp,
        }
        results = {}
        with server("bare", env) as port:
            results["bare Litestar JSON"] = asyncio.run(
                run_load(port, "/bare", {}, connections=args.connections, seconds=args.seconds)
            )
        with server("api", env) as port:
            headers = {"Authorization": f"Bearer {token}"}
            # Two reference points show where the time goes: a database round trip
            # without auth, and auth without a list.
            for name, path in [
                ("GET /v1/ping (DB round trip)", "/v1/ping"),
                ("GET /v1/user (auth only)", "/v1/user"),
                (f"GET /v1/grids ({args.grids} grids)", "/v1/grids"),
            ]:
                results[name] = asyncio.run(
                    run_load(
                        port, path, headers, connections=args.connections, seconds=args.seconds
                    )
                )
    bare_result, api_result = results["bare Litestar JSON"], list(results.values())[-1]
    print(
        f"\n{args.connections} concurrent keep-alive clients, {args.seconds:.0f} s each, "
        f"database {url.split(':')[0]}, one uvicorn process per target\n"
    )
    print("| target | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        print(row(name, result))
    print(
        f"\nratio GET /v1/grids / bare: {api_result.rps / bare_result.rps:.1%} "
        f"(target >= 40 %, p99 < 25 ms)"
    )


if __name__ == "__main__":
    main()
