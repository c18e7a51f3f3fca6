"""Benchmark: N real agents connected to ONE API process: its RSS and node RPC round trips.

Run: ``uv run python -m tests.benchmarks.agents [--counts 100,1000] [--rpcs 200]``. Needs
KONTENA_TEST_DATABASE_URL (PostgreSQL: the API role does not run on SQLite) and
KONTENA_TEST_REDIS_URL (the API role routes node RPC through Redis). Per N: a fresh
``kontena-master api`` process, a fresh grid, agents in ``tests.benchmarks.agent_swarm``
subprocesses; the grid (and so its nodes, stats and events) is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from sqlalchemy import delete, select

from core.node_rpc import NodeRef, NodeRpcError
from core.rpc_redis import HOLDER_CACHE_SECONDS, RedisNodeRpc
from core.tokens import digest, new_grid_token
from core.vault import MasterKey, Vault
from models import Grid, Node
from models.db import Database, is_sqlite
from models.migrate import upgrade
from tests.benchmarks.agent_procs import VAULT_KEY, ApiProcess, Swarm, rss_mb
from tests.benchmarks.agent_swarm import raise_nofile_limit

RSS_TARGET_MB = 200.0
P99_TARGET_MS = 100.0
# Kontena numbers a grid's nodes 1..254 (overlay addresses): more agents need more grids.
GRID_NODES = 250
STAND_IN_NOTICE = (
    "NOTE: each agent is the real agent code (agent/: connection loop, MessagePack-RPC peer, "
    "node session) with a STAND-IN Docker client (tests/agent/fakes.py FakeDocker); the "
    "stand-in is used for this benchmark only."
)


@dataclass
class RpcResult:
    """Latencies (ms) of the calls that succeeded, and the failures by type."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, p: float) -> float:
        """Latency percentile in ms (nan without successes)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@dataclass
class Round:
    """What one N measured."""

    agents: int
    procs: int
    grids: int = 0
    join_s: float = math.nan
    online: int = 0
    rss_idle: float = math.nan
    rss_online: float = math.nan
    rss_after_rpc: float = math.nan
    rss_peak: float = math.nan
    sequential: RpcResult = field(default_factory=RpcResult)
    concurrent: RpcResult = field(default_factory=RpcResult)
    by_id: RpcResult = field(default_factory=RpcResult)

    @property
    def rpc_modes(self) -> list[RpcResult]:
        """Every RPC measurement of the round."""
        return [self.sequential, self.concurrent, self.by_id]

    reconnects: int = 0
    pings: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def require_env() -> tuple[str, str]:
    """The PostgreSQL and Redis URLs, or exit saying what is missing."""
    db_url = os.environ.get("KONTENA_TEST_DATABASE_URL", "")
    redis_url = os.environ.get("KONTENA_TEST_REDIS_URL", "")
    if not db_url or is_sqlite(db_url) or not redis_url:
        raise SystemExit(
            "tests.benchmarks.agents needs PostgreSQL and Redis: set KONTENA_TEST_DATABASE_URL="
            "postgresql+asyncpg://… and KONTENA_TEST_REDIS_URL=redis://…/N. The API role it "
            "measures (`kontena-master api`) runs on PostgreSQL and routes node RPC through "
            "Redis; a SQLite/embedded run would measure a different process."
        )
    return db_url, redis_url


async def create_grid(db: Database, name: str) -> tuple[str, str]:
    """A grid with a known join token, straight through the ORM; returns (id, token)."""
    token = new_grid_token()
    vault = Vault(MasterKey.from_secret(VAULT_KEY))
    async with db.session() as session:
        grid = Grid(
            name=name,
            token_hash=digest(token),
            token_encrypted=vault.encrypt(token, context=f"grid:{name}"),
        )
        session.add(grid)
        await session.commit()
        return grid.id, token


async def delete_grid(db: Database, grid_id: str) -> None:
    """Remove the grid; its nodes, node stats and events go with it (ON DELETE CASCADE)."""
    async with db.session() as session:
        await session.execute(delete(Grid).where(Grid.id == grid_id))
        await session.commit()


async def online_nodes(db: Database, grid_ids: list[str]) -> list[str]:
    """Ids of the grids' nodes whose status is ``online`` (connected and updated)."""
    async with db.session() as session:
        rows = await session.execute(
            select(Node.id).where(
                Node.grid_id.in_(grid_ids),
                Node.node_id.is_not(None),
                Node.connected.is_(True),
                Node.updated.is_(True),
                Node.availability != "drain",
            )
        )
        return list(rows.scalars())


async def wait_online(
    db: Database, grid_ids: list[str], n: int, deadline: float, api_url: str
) -> tuple[int, list[float]]:
    """Poll until ``n`` nodes are online or the deadline passes: (online, /v1/ping ms list).

    Each poll also times ``GET /v1/ping`` (one DB round trip): does the API still answer
    HTTP while the agents join?
    """
    online, pings = 0, []
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                ok = (await http.get("/v1/ping")).is_success
            except httpx.HTTPError:
                ok = False
            pings.append((time.perf_counter() - start) * 1000 if ok else math.inf)
            online = len(await online_nodes(db, grid_ids))
            if online >= n:
                break
            await asyncio.sleep(0.2)
    return online, pings


async def node_rows(db: Database, ids: list[str]) -> list[Node]:
    """The node rows (with their current ``connection_holder``)."""
    async with db.session() as session:
        return list((await session.execute(select(Node).where(Node.id.in_(ids)))).scalars())


async def rpc_calls(
    rpc: RedisNodeRpc, nodes: Sequence[NodeRef], total: int, concurrency: int, timeout: float
) -> RpcResult:
    """``total`` pings to random nodes, ``concurrency`` in flight, as a worker calls them."""
    result = RpcResult()
    todo = iter(range(total))

    async def caller() -> None:
        for _ in todo:
            start = time.perf_counter()
            try:
                reply = await rpc.request(random.choice(nodes), "/agent/ping", [], timeout)
            except NodeRpcError as exc:
                result.errors[type(exc).__name__] += 1
                continue
            if reply != "pong":
                result.errors["bad reply"] += 1
                continue
            result.latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return result


async def measure(args: argparse.Namespace, n: int, db_url: str, redis_url: str) -> Round:
    """One round: API up, N agents online, RSS, RPC, everything torn down."""
    procs = args.procs or max(1, min(4, math.ceil(n / 500)))
    result = Round(agents=n, procs=procs)
    run = secrets.token_hex(3)
    # A pool as wide as the RPC concurrency: the caller looks each node's holder up in the DB.
    db = Database(db_url, pool_size=max(4, args.concurrency))
    grid_ids: list[str] = []
    tokens: list[str] = []
    rpc = RedisNodeRpc(redis_url, lambda: db)
    try:
        for i in range(math.ceil(n / GRID_NODES)):
            grid_id, token = await create_grid(db, f"agents-bench-{run}-{i}")
            grid_ids.append(grid_id)
            tokens.append(token)
        grids = {"tokens": tokens, "per_grid": GRID_NODES}
        result.grids = len(grid_ids)
        with tempfile.TemporaryDirectory() as tmp, ApiProcess(db_url, redis_url, tmp) as api:
            await api.wait_ready()
            result.rss_idle = rss_mb(api.pid)["VmRSS"]
            with Swarm(api.ws_url, run, grids, n, procs, args) as swarm:
                started = time.monotonic()
                result.online, result.pings = await wait_online(
                    db, grid_ids, n, started + args.join_timeout, api.http_url
                )
                if result.online < n:
                    result.notes.append(f"only {result.online}/{n} online after the deadline")
                else:
                    result.join_s = time.monotonic() - started
                await asyncio.sleep(args.settle)
                result.rss_online = rss_mb(api.pid)["VmRSS"]
                result.notes.append(f"host load average (1 min) before the RPCs: {load1():.2f}")
                nodes = await online_nodes(db, grid_ids)
                if nodes:
                    await rpc.start()
                    rows = await node_rows(db, nodes)
                    c, timeout = args.concurrency, args.rpc_timeout
                    # Warm-up that also opens the caller's pooled DB connections.
                    await rpc_calls(rpc, nodes, 2 * c, c, timeout)
                    result.sequential = await rpc_calls(rpc, rows, args.rpcs, 1, timeout)
                    result.concurrent = await rpc_calls(rpc, rows, args.rpcs, c, timeout)
                    result.by_id = await rpc_calls(rpc, nodes, args.rpcs, c, timeout)
                memory = rss_mb(api.pid)
                result.rss_after_rpc, result.rss_peak = memory["VmRSS"], memory["VmHWM"]
                still = len(await online_nodes(db, grid_ids))
                if still < result.online:
                    result.notes.append(f"{result.online - still} nodes dropped during the RPCs")
            result.reconnects = swarm.reconnects
            result.notes.extend(swarm.notes)
            result.notes.extend(api.log_summary())
    finally:
        await rpc.stop()
        for grid_id in grid_ids:
            await delete_grid(db, grid_id)
        await db.dispose()
    return result


def load1() -> float:
    """The host's 1-minute load average (other work on the host skews latencies)."""
    return os.getloadavg()[0]


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def print_table(rounds: list[Round], args: argparse.Namespace) -> None:
    """The Markdown results table, the targets and notes."""
    print(f"\n{STAND_IN_NOTICE}")
    print(
        f"One `kontena-master api` process per N (PostgreSQL + Redis); agents in separate "
        f"processes; agent stats every {args.stats_interval:.0f} s, WebSocket pings every "
        f"{args.ping_interval:.0f} s; master keepalive per KONTENA_AGENT_PING_INTERVAL. "
        f"RPC: core.rpc_redis.RedisNodeRpc.request(node, '/agent/ping') from this process to "
        f"random online nodes (Redis pub/sub to the API, WebSocket to the agent and back), "
        f"{args.rpcs} calls each: sequential and {args.concurrency} in flight given the node "
        f"row; then {args.concurrency} in flight given the node id, as workers call it (the "
        f"caller looks the node's holder up in the DB once and reuses it for "
        f"{HOLDER_CACHE_SECONDS:.0f} s; core.rpc_redis). The host has "
        f"{os.cpu_count()} CPUs shared by every process here (and anything else running).\n"
    )
    print(
        "| N | grids | agent procs | join all N (s) | API RSS idle → N online (MB) "
        "| after RPC / peak (MB) | RPC seq p50 / p99 (ms) | RPC x"
        f"{args.concurrency} p50 / p99 (ms) | RPC x{args.concurrency} by id p50 / p99 (ms) "
        "| RPC errors | agent reconnects | GET /v1/ping during join max (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rounds:
        errors = sum((m.errors for m in r.rpc_modes), Counter[str]())
        print(
            f"| {r.agents:,} | {r.grids} | {r.procs} | {_ms(r.join_s)} | {_ms(r.rss_idle)} → "
            f"{_ms(r.rss_online)} | {_ms(r.rss_after_rpc)} / {_ms(r.rss_peak)} | "
            f"{_ms(r.sequential.percentile(50))} / {_ms(r.sequential.percentile(99))} | "
            f"{_ms(r.concurrent.percentile(50))} / {_ms(r.concurrent.percentile(99))} | "
            f"{_ms(r.by_id.percentile(50))} / {_ms(r.by_id.percentile(99))} | "
            f"{sum(errors.values())}{' ' + str(dict(errors)) if errors else ''} | "
            f"{r.reconnects} | {_ms(max(r.pings, default=math.nan))} |"
        )
    print(f"\nTargets: 1,000 agents in < {RSS_TARGET_MB:.0f} MB RSS, p99 < {P99_TARGET_MS:.0f} ms")
    for r in rounds:
        p99 = max(m.percentile(99) for m in r.rpc_modes)
        rss_ok = r.rss_after_rpc < RSS_TARGET_MB
        p99_ok = p99 < P99_TARGET_MS
        print(
            f"- N={r.agents:,}: RSS {_ms(r.rss_after_rpc)} MB {'OK' if rss_ok else 'MISSED'}, "
            f"worst p99 {_ms(p99)} ms {'OK' if p99_ok else 'MISSED'}"
        )
        for note in r.notes:
            print(f"  - {note}")


def main() -> None:
    """Parse flags, run each N, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", default="100,1000", help="agent counts, comma separated")
    parser.add_argument("--rpcs", type=int, default=200, help="RPC calls per mode")
    parser.add_argument("--concurrency", type=int, default=20, help="RPCs in flight")
    parser.add_argument("--rpc-timeout", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=0, help="agent processes (0: 1 per 500)")
    parser.add_argument("--stats-interval", type=float, default=3600.0)
    parser.add_argument("--ping-interval", type=float, default=30.0)
    parser.add_argument("--join-timeout", type=float, default=180.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before RSS")
    args = parser.parse_args()
    db_url, redis_url = require_env()
    limit = raise_nofile_limit()  # inherited by the API and agent processes
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    if max(counts) * 2 + 200 > limit:
        print(
            f"warning: RLIMIT_NOFILE is {limit}; {max(counts)} agents need about "
            f"{max(counts) * 2 + 200} descriptors",
            file=sys.stderr,
        )
    upgrade(db_url)
    print(STAND_IN_NOTICE, flush=True)
    rounds = []
    for n in counts:
        print(f"running N={n:,} …", flush=True)
        rounds.append(asyncio.run(measure(args, n, db_url, redis_url)))
        print(json.dumps({"N": n, "join_s": rounds[-1].join_s}), flush=True)
    print_table(rounds, args)


if __name__ == "__main__":
    main()
