"""Benchmark: the caller's side of node RPC by row vs by node id (how workers call it).

Run: ``uv run python -m tests.benchmarks.rpc_by_id [--calls 400] [--rounds 3]``. Needs
KONTENA_TEST_DATABASE_URL (PostgreSQL) and KONTENA_TEST_REDIS_URL. A holder RedisNodeRpc in this
process holds 100 stand-in sockets that answer at once (no agents: this isolates the caller);
a second RedisNodeRpc calls them through Redis, 20 in flight. Modes are interleaved so host
load hits them alike: by row, by id as now (holder looked up once, reused), and by id looking
the holder up on every call (autocommit statement; the ORM session the lookup used before).
Prints p50/p99 and the caller's SQL statements per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, event, select

from core.rpc_redis import RedisNodeRpc
from models import Grid, Node
from models.db import Database
from models.migrate import upgrade

NODES = 100
CONCURRENCY = 20


class StandInSocket:
    """A held agent socket that answers every request with ``pong`` at once."""

    def __init__(self, pk: str, loop: asyncio.AbstractEventLoop) -> None:
        self.node_pk, self.loop = pk, loop

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:
        """``pong``."""
        return "pong"

    async def notify(self, method: str, params: list[Any]) -> None:
        """Nothing."""

    async def recheck(self) -> None:
        """Nothing."""


async def _seed(db: Database, holder: str) -> list[Node]:
    async with db.session() as session:
        grid = Grid(name="bench-rpc-by-id", token_hash="r" * 64, token_encrypted="x")
        session.add(grid)
        await session.flush()
        rows = [
            Node(
                grid_id=grid.id,
                name=f"n{i}",
                node_number=i + 1,
                connected=True,
                connection_holder=holder,
            )
            for i in range(NODES)
        ]
        session.add_all(rows)
        await session.commit()
    return rows


def _orm_lookup(db: Database) -> Callable[[Any], Awaitable[str]]:
    async def lookup(node: Any) -> str:
        async with db.session() as session:
            row = (
                await session.execute(
                    select(Node.connected, Node.connection_holder).where(Node.id == node)
                )
            ).one()
        return str(row.connection_holder)

    return lookup


async def run(calls: int, rounds: int) -> None:
    """Measure every mode ``rounds`` times, ``calls`` calls each; print the table."""
    url, redis = os.environ["KONTENA_TEST_DATABASE_URL"], os.environ["KONTENA_TEST_REDIS_URL"]
    await asyncio.to_thread(upgrade, url)
    db = Database(url, pool_size=CONCURRENCY)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    holder, caller = RedisNodeRpc(redis, lambda: db), RedisNodeRpc(redis, lambda: db)
    await holder.start()
    await caller.start()
    rows = await _seed(db, holder.holder)
    loop = asyncio.get_running_loop()
    for row in rows:
        holder.attach(StandInSocket(row.id, loop))
    ids = [row.id for row in rows]
    modes: dict[str, tuple[list[Any], str]] = {
        "by row": (list(rows), ""),
        "by id, holder reused (now)": (list(ids), ""),
        "by id, autocommit lookup every call": (list(ids), "uncached"),
        "by id, ORM-session lookup every call (before)": (list(ids), "orm"),
    }
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    per_mode_statements = dict.fromkeys(modes, 0)

    async def measure(mode: str, total: int) -> None:
        targets, variant = modes[mode]
        saved = caller.__dict__.copy()
        if variant:
            caller._cached_holder = lambda node: None  # type: ignore[method-assign]
        if variant == "orm":
            caller._holder = _orm_lookup(db)  # type: ignore[method-assign]
        before, todo = statements[0], iter(range(total))

        async def one_caller() -> None:
            for i in todo:
                start = time.perf_counter()
                assert await caller.request(targets[i % NODES], "/agent/ping", []) == "pong"
                latencies[mode].append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(one_caller() for _ in range(CONCURRENCY)))
        per_mode_statements[mode] += statements[0] - before
        caller.__dict__.clear()
        caller.__dict__.update(saved)

    try:
        for mode in modes:  # warm-up: pooled connections, first lookups
            await measure(mode, NODES)
        for mode in modes:
            latencies[mode].clear()
            per_mode_statements[mode] = 0
        for _ in range(rounds):
            for mode in modes:
                await measure(mode, calls)
    finally:
        await caller.stop()
        await holder.stop()
        async with db.session() as session:
            await session.execute(delete(Grid).where(Grid.name == "bench-rpc-by-id"))
            await session.commit()
        await db.dispose()
    print(
        f"Host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"{calls * rounds} calls per mode, {CONCURRENCY} in flight, stand-in sockets.\n"
    )
    print("| mode | p50 (ms) | p99 (ms) | caller SQL statements per call |")
    print("|---|---|---|---|")
    for mode, values in latencies.items():
        values.sort()
        p50, p99 = values[len(values) // 2], values[int(len(values) * 0.99)]
        print(f"| {mode} | {p50:.1f} | {p99:.1f} | {per_mode_statements[mode] / len(values):.2f} |")


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=400, help="calls per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.rounds))


if __name__ == "__main__":
    main()
