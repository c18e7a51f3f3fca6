"""Node and grid metrics (per-minute node stats) and container stats ordering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select

from core import node_metrics
from core.errors import Invalid
from core.node_metrics import ContainerStat
from models import Grid, Node, NodeStat
from models.db import Database
from models.migrate import upgrade

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = "from=2024-05-01T12:00:00Z&to=2024-05-01T12:10:00Z"


def stat(
    seconds: int,
    *,
    user: float,
    system: float = 0.0,
    nice: float = 0.0,
    cores: int = 2,
    used: int = 100,
    filesystem: list[dict[str, int]] | None = None,
    rx: int = 0,
    tx: int = 0,
    network: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one NodeStat row, ``seconds`` after T0, as the agent reports them."""
    return {
        "created_at": T0 + timedelta(seconds=seconds),
        "cpu": {"num_cores": cores, "user": user, "system": system, "nice": nice, "idle": 50.0},
        "memory": {
            "used": used,
            "total": 1000,
            "free": 1000 - used,
            "active": 10,
            "inactive": 20,
            "cached": 30,
            "buffers": 40,
        },
        "load": {"1m": 0.1, "5m": 0.2, "15m": 0.3},
        "filesystem": filesystem
        if filesystem is not None
        else [{"name": "d", "used": 10, "total": 100}],
        "network": network
        or {
            "internal": {"interfaces": ["weave"], "rx_bytes": rx, "tx_bytes": tx},
            "external": {"interfaces": ["eth0"], "rx_bytes": 2 * rx, "tx_bytes": 2 * tx},
        },
        "usage": {"container_seconds": 60},
    }


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> None:
    """Grids ``main`` and ``other``, with nodes ``a`` and ``b`` in main and ``x`` in other."""
    for name in ("main", "other"):
        response = await client.post("/v1/grids", json={"name": name}, headers=admin.headers)
        assert response.status_code == 201
    for grid_name, node in (("main", "a"), ("main", "b"), ("other", "x")):
        response = await client.post(
            f"/v1/grids/{grid_name}/nodes", json={"name": node}, headers=admin.headers
        )
        assert response.status_code == 201


async def add_stats(db: Database, node_name: str, rows: list[dict[str, Any]]) -> None:
    """Store NodeStat rows for the node named ``node_name``."""
    async with db.session() as session:
        node = (await session.scalars(select(Node).where(Node.name == node_name))).one()
        for row in rows:
            session.add(NodeStat(node_id=node.id, grid_id=node.grid_id, **row))
        await session.commit()


async def seed(db: Database) -> None:
    """Node a: two samples in 12:00, one in 12:01 and 12:03; node b: one in 12:00 and 12:01."""
    await add_stats(
        db,
        "a",
        [
            stat(
                10,
                user=10,
                system=5,
                used=100,
                rx=1000,
                tx=100,
                filesystem=[{"used": 10, "total": 100}, {"used": 5, "total": 50}],
            ),
            stat(
                40,
                user=20,
                system=5,
                nice=1,
                used=200,
                rx=1600,
                tx=100,
                filesystem=[{"used": 10, "total": 100}, {"used": 5, "total": 50}],
            ),
            stat(70, user=30, used=300, rx=4300, tx=550),
            stat(190, user=0, used=300, rx=4300, tx=550),
            # Outside the window: before `from` minus the lookback, and after `to`.
            stat(-600, user=99, used=999),
            stat(660, user=99, used=999),
        ],
    )
    await add_stats(
        db,
        "b",
        [
            stat(30, user=40, cores=4, used=1000, rx=10, tx=10, filesystem=[]),
            stat(90, user=60, cores=4, used=3000, rx=70, tx=10, filesystem=[]),
        ],
    )
    await add_stats(db, "x", [stat(20, user=80, used=5000)])


async def test_node_metrics_average_each_minute(
    client: httpx.AsyncClient, admin: Any, grid: None, db: Database
) -> None:
    await seed(db)
    response = await client.get(f"/v1/nodes/main/a/metrics?{WINDOW}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:10:00Z")
    points = body["stats"]
    assert [p["timestamp"] for p in points] == [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:01:00Z",
        "2024-05-01T12:03:00Z",
    ]
    first = points[0]
    assert first["cpu"] == {"used": 20.5, "cores": 2}  # ((10+5+0) + (20+5+1)) / 2
    assert first["memory"] == {
        "used": 150,
        "total": 1000,
        "free": 850,
        "active": 10,
        "inactive": 20,
        "cached": 30,
        "buffers": 40,
    }
    assert first["filesystem"] == {"used": 15, "total": 150}
    # The first minute has no earlier minute to derive a rate from.
    assert first["network"]["internal"] == {
        "interfaces": ["weave"],
        "rx_bytes": 1300,
        "rx_bytes_per_second": None,
        "tx_bytes": 100,
        "tx_bytes_per_second": None,
    }
    second = points[1]
    assert second["cpu"]["used"] == 30.0
    # 3000 bytes over the 45 s between the samples' mean times (12:00:25 → 12:01:10).
    assert second["network"]["internal"]["rx_bytes_per_second"] == pytest.approx(66.67)
    assert second["network"]["internal"]["tx_bytes_per_second"] == pytest.approx(10.0)
    assert second["network"]["external"]["rx_bytes"] == 8600
    assert second["network"]["external"]["rx_bytes_per_second"] == pytest.approx(133.33)
    assert second["network"]["external"]["interfaces"] == ["eth0"]
    third = points[2]
    assert third["network"]["internal"]["rx_bytes_per_second"] == 0.0  # idle for two minutes
    by_id = await client.get(f"/v1/nodes/main/AAAA:none/metrics?{WINDOW}", headers=admin.headers)
    assert by_id.status_code == 404


async def test_grid_metrics_sum_nodes_and_average_cpu(
    client: httpx.AsyncClient, admin: Any, grid: None, db: Database
) -> None:
    await seed(db)
    response = await client.get(f"/v1/grids/main/metrics?{WINDOW}", headers=admin.headers)
    assert response.status_code == 200, response.text
    points = {p["timestamp"][11:16]: p for p in response.json()["stats"]}
    assert sorted(points) == ["12:00", "12:01", "12:03"]
    noon = points["12:00"]
    assert noon["cpu"] == {"used": 30.25, "cores": 6}  # (20.5 + 40) / 2; 2 + 4 cores
    assert noon["memory"]["used"] == 1150  # 150 + 1000; node x of grid other is not counted
    assert noon["memory"]["total"] == 2000
    assert noon["filesystem"] == {"used": 15, "total": 150}
    assert noon["network"]["internal"]["rx_bytes"] == 1310
    one = points["12:01"]
    assert one["cpu"] == {"used": 45.0, "cores": 6}
    assert one["memory"]["used"] == 3300
    # Rates are summed over nodes: 66.67 (a) + 60 / 60 s (b, 12:00:30 → 12:01:30).
    assert one["network"]["internal"]["rx_bytes_per_second"] == pytest.approx(67.67)
    assert points["12:03"]["cpu"]["cores"] == 2  # only node a reported


async def test_rates_sent_by_the_agent_are_used_as_they_are(
    client: httpx.AsyncClient, admin: Any, grid: None, db: Database
) -> None:
    side = {
        "interfaces": ["eth0"],
        "rx_bytes": 5,
        "tx_bytes": 5,
        "rx_bytes_per_second": 12.5,
        "tx_bytes_per_second": 2.5,
    }
    await add_stats(db, "a", [stat(5, user=1, network={"internal": side, "external": side})])
    response = await client.get(f"/v1/nodes/main/a/metrics?{WINDOW}", headers=admin.headers)
    [point] = response.json()["stats"]
    assert point["network"]["internal"]["rx_bytes_per_second"] == 12.5
    assert point["network"]["external"]["tx_bytes_per_second"] == 2.5


async def test_default_window_is_the_last_hour(
    client: httpx.AsyncClient, admin: Any, grid: None, db: Database
) -> None:
    now = datetime.now(UTC)
    recent = stat(0, user=5) | {"created_at": now - timedelta(minutes=30)}
    old = stat(0, user=5) | {"created_at": now - timedelta(hours=2)}
    await add_stats(db, "a", [recent, old])
    for path in ("/v1/nodes/main/a/metrics", "/v1/grids/main/metrics"):
        body = (await client.get(path, headers=admin.headers)).json()
        start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
        assert end - start == timedelta(hours=1)
        assert abs(end - now) < timedelta(minutes=1)
        assert len(body["stats"]) == 1


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("from=yesterday", {"from": "From isn't a valid time"}),
        ("to=2024-13-01T00:00:00Z", {"to": "To isn't a valid time"}),
        ("from=2024-05-01T13:00:00Z&to=2024-05-01T12:00:00Z", {"from": "From must be before to"}),
        (
            "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:01Z",
            {"from": "From must be within 24 hours of to"},
        ),
    ],
)
async def test_bad_windows_name_the_parameter(
    client: httpx.AsyncClient, admin: Any, grid: None, query: str, error: dict[str, str]
) -> None:
    for path in ("/v1/nodes/main/a/metrics", "/v1/grids/main/metrics"):
        response = await client.get(f"{path}?{query}", headers=admin.headers)
        assert (response.status_code, response.json()) == (422, {"error": error})


async def test_offsets_and_unencoded_plus_signs_are_understood(
    client: httpx.AsyncClient, admin: Any, grid: None, db: Database
) -> None:
    await seed(db)
    # `+02:00` typed into a URL arrives as a space.
    query = "from=2024-05-01T14:00:00+02:00&to=2024-05-01T12:01:59"
    response = await client.get(f"/v1/nodes/main/a/metrics?{query}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:01:59Z")
    assert len(body["stats"]) == 2


async def test_stats_endpoints_list_no_containers_yet(
    client: httpx.AsyncClient, admin: Any, grid: None
) -> None:
    for path in ("/v1/nodes/main/a/stats", "/v1/grids/main/stats"):
        ok = await client.get(f"{path}?sort=memory&limit=5", headers=admin.headers)
        assert (ok.status_code, ok.json()) == (200, {"stats": []})
        bad = await client.get(f"{path}?limit=many", headers=admin.headers)
        assert (bad.status_code, bad.json()) == (
            422,
            {"error": {"limit": "Limit isn't an integer"}},
        )


def container(name: str, cpu: float, memory: int, rx: int, tx: int) -> ContainerStat:
    """A container with a stats document shaped like the agent's container stats."""
    return ContainerStat(
        name=name,
        stats={
            "cpu": {"usage_pct": cpu},
            "memory": {"usage": memory},
            "network": {
                "internal": {"rx_bytes": rx, "tx_bytes": tx},
                "external": {"rx_bytes": rx, "tx_bytes": 0},
            },
            "spec": {"cpu": {"limit": 1024, "mask": "0-3"}, "memory": {"limit": 512}},
        },
    )


STATS = [
    container("web-1", cpu=5.0, memory=300, rx=10, tx=900),
    ContainerStat(name="idle-1"),
    container("db-1", cpu=50.0, memory=100, rx=500, tx=1),
    container("cache-1", cpu=20.0, memory=900, rx=1, tx=50),
]


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("cpu", ["db-1", "cache-1", "web-1", "idle-1"]),
        ("memory", ["cache-1", "web-1", "db-1", "idle-1"]),
        ("rx_bytes", ["db-1", "web-1", "cache-1", "idle-1"]),
        ("tx_bytes", ["web-1", "cache-1", "db-1", "idle-1"]),
    ],
)
def test_container_stats_sort_descending(sort: str, order: list[str]) -> None:
    items = node_metrics.sort_container_stats(STATS, node_metrics.parse_sort(sort), None)
    assert [i.container_id for i in items] == order


def test_container_stats_items_limit_and_sort_validation() -> None:
    assert node_metrics.parse_sort(None) == node_metrics.parse_sort("") == "cpu"
    with pytest.raises(Invalid) as refused:
        node_metrics.parse_sort("bogus")
    assert refused.value.tree == {"sort": "Sort isn't an option"}
    items = node_metrics.sort_container_stats(STATS, node_metrics.parse_sort("cpu"), 2)
    assert msgspec.to_builtins(items) == [
        {
            "container_id": "db-1",
            "cpu": {"usage": 50.0, "limit": 1024, "num_cores": 4},
            "memory": {"usage": 100, "limit": 512},
            "network": {
                "internal": {"rx_bytes": 500, "tx_bytes": 1},
                "external": {"rx_bytes": 500, "tx_bytes": 0},
            },
        },
        {
            "container_id": "cache-1",
            "cpu": {"usage": 20.0, "limit": 1024, "num_cores": 4},
            "memory": {"usage": 900, "limit": 512},
            "network": {
                "internal": {"rx_bytes": 1, "tx_bytes": 50},
                "external": {"rx_bytes": 1, "tx_bytes": 0},
            },
        },
    ]
    idle = node_metrics.sort_container_stats([ContainerStat(name="idle")], "cpu", None)
    assert msgspec.to_builtins(idle) == [
        {"container_id": "idle", "cpu": None, "memory": None, "network": None}
    ]
    assert node_metrics.sort_container_stats(STATS, "cpu", 0) == []
    assert node_metrics.num_cores("0,2") == 3 and node_metrics.num_cores(None) is None
    with pytest.raises(Invalid):
        node_metrics.parse_limit("-1")


async def test_metrics_query_runs_on_sqlite(tmp_path: Path) -> None:
    """Embedded mode: the same per-minute aggregation on SQLite."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kontena.db'}"
    await asyncio.to_thread(upgrade, url)
    database = Database(url)
    try:
        async with database.session() as session:
            grids = [Grid(name=n, token_hash=n, token_encrypted="x") for n in ("main", "other")]
            session.add_all(grids)
            await session.flush()
            a = Node(grid_id=grids[0].id, name="a", node_number=1)
            b = Node(grid_id=grids[0].id, name="b", node_number=2)
            x = Node(grid_id=grids[1].id, name="x", node_number=1)
            session.add_all([a, b, x])
            await session.flush()
            rows = [
                (
                    a,
                    stat(
                        10,
                        user=10,
                        system=5,
                        rx=1000,
                        filesystem=[{"used": 10, "total": 100}, {"used": 5, "total": 50}],
                    ),
                ),
                (a, stat(40, user=20, system=5, nice=1, rx=1600)),
                (a, stat(70, user=30, rx=4300)),
                (b, stat(30, user=40, cores=4, used=1000)),
                (x, stat(30, user=90, used=7000)),
            ]
            session.add_all(NodeStat(node_id=n.id, grid_id=n.grid_id, **r) for n, r in rows)
            await session.commit()
        async with database.session() as session:
            end = T0 + timedelta(minutes=10)
            node = await node_metrics.node_metrics(session, a.id, T0, end)
            grid_wide = await node_metrics.grid_metrics(session, grids[0].id, T0, end)
        assert [p.timestamp for p in node.stats] == [T0, T0 + timedelta(minutes=1)]
        assert node.stats[0].cpu.used == 20.5
        assert node.stats[0].filesystem.used == 12  # (15 + 10) / 2, rounded
        assert node.stats[1].network.internal.rx_bytes_per_second == pytest.approx(66.67)
        assert grid_wide.stats[0].cpu.used == 30.25
        assert grid_wide.stats[0].memory.used == 1100
    finally:
        await database.dispose()
