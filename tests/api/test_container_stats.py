"""Container records and stats: the agent methods that store them and the API that reads them.

The containers arrive through the master's own agent handlers (core.container_updates, as the
agent socket runs them), with inspect documents shaped like Docker's; the real agent and
Docker are in tests/e2e/test_container_stats.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from core.container_metrics import service_metrics
from core.node_updates import AgentError, handle_agent_message
from models import Container, ContainerStat, Grid, Node, Service
from models.db import Database
from models.migrate import upgrade

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = "from=2024-05-01T12:00:00Z&to=2024-05-01T12:10:00Z"
SVC = "/v1/services/main/null/web"


def inspect(
    docker_id: str,
    name: str,
    *,
    service_id: str | None = None,
    number: int = 1,
    running: bool = True,
    env: list[str] | None = None,
) -> dict[str, Any]:
    """A container document as the agent sends it (the stored part of ``docker inspect``)."""
    labels = {"team": "blue"}
    if service_id:
        labels |= {
            "io.kontena.service.id": service_id,
            "io.kontena.service.instance_number": str(number),
            "io.kontena.container.deploy_rev": "rev-1",
            "io.kontena.service.revision": "3",
        }
    return {
        "Id": docker_id,
        "Name": f"/{name}",
        "Config": {
            "Image": "busybox:latest",
            "Cmd": ["httpd", "-f"],
            "Env": env or ["PATH=/bin"],
            "Labels": labels,
            "Hostname": name,
            "Domainname": "main.kontena.local",
        },
        "State": {
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 42 if running else 0,
            "ExitCode": 0 if running else 137,
            "Error": "",
            "StartedAt": "2024-05-01T11:59:00.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "NetworkSettings": {
            "IPAddress": "172.17.0.2",
            "Ports": {},
            "Networks": {"bridge": {"IPAddress": "172.17.0.2", "Gateway": "172.17.0.1"}},
        },
        "Mounts": [],
    }


def sample(docker_id: str, *, cpu: float, memory: int, rx: int, tx: int) -> dict[str, Any]:
    """One ``/containers/stat`` sample."""
    return {
        "id": docker_id,
        "spec": {"cpu": {"limit": 1024, "mask": "0-1"}, "memory": {"limit": 1000}},
        "cpu": {"usage": 1, "usage_pct": cpu},
        "memory": {"usage": memory, "working_set": memory},
        "network": {
            "internal": {"interfaces": [], "rx_bytes": 0, "tx_bytes": 0},
            "external": {
                "interfaces": ["eth0"],
                "rx_bytes": rx,
                "rx_bytes_per_second": rx / 60,
                "tx_bytes": tx,
                "tx_bytes_per_second": tx / 60,
            },
        },
        "time": "2024-05-01T12:00:00Z",
    }


class World:
    """Grid ``main``: connected nodes a and b, offline node c, service ``web``."""

    def __init__(self, db: Database, service_id: str) -> None:
        self.db = db
        self.service_id = service_id

    async def node(self, name: str) -> Node:
        """The node row named ``name``."""
        async with self.db.session() as session:
            return (await session.scalars(select(Node).where(Node.name == name))).one()

    async def send(self, node_name: str, method: str, params: list[Any]) -> Any:
        """Run an agent method as the socket of ``node_name`` would (one transaction)."""
        async with self.db.session() as session:
            node = (await session.scalars(select(Node).where(Node.name == node_name))).one()
            result = await handle_agent_message(session, node, method, params)
            await session.commit()
            return result

    async def save(self, node_name: str, document: dict[str, Any]) -> None:
        """``/containers/save``."""
        await self.send(node_name, "/containers/save", [{"node": node_name, "container": document}])

    async def stat(
        self, node_name: str, *samples: dict[str, Any], at: datetime | None = None
    ) -> None:
        """``/containers/stat``; ``at`` moves the stored samples to that time."""
        await self.send(node_name, "/containers/stat", list(samples))
        if at is not None:
            async with self.db.session() as session:
                ids = [s["id"] for s in samples]
                await session.execute(
                    update(ContainerStat)
                    .where(ContainerStat.container_id.in_(ids), ContainerStat.created_at > at)
                    .values(created_at=at)
                )
                await session.commit()


@pytest.fixture
async def world(client: httpx.AsyncClient, admin: Any, db: Database) -> World:
    """The grid, its nodes and service ``web`` with secret env ``PASSWORD``."""
    assert (await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)).is_success
    secret = {"name": "DB_PASS", "value": "s3cret-value"}
    assert (
        await client.post("/v1/grids/main/secrets", json=secret, headers=admin.headers)
    ).is_success
    body = {
        "name": "web",
        "image": "busybox:latest",
        "stateful": False,
        "env": ["GREETING=hi"],
        "secrets": [{"secret": "DB_PASS", "name": "PASSWORD", "type": "env"}],
    }
    created = await client.post("/v1/grids/main/services", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    async with db.session() as session:
        grid = (await session.scalars(select(Grid).where(Grid.name == "main"))).one()
        for number, name in enumerate(("a", "b", "c"), start=1):
            session.add(
                Node(
                    grid_id=grid.id,
                    name=name,
                    node_id=f"ID:{name.upper()}",
                    node_number=number,
                    connected=name != "c",
                    labels=[f"az={name}"],
                )
            )
        service_id = (await session.scalars(select(Service.id))).one()
        await session.commit()
    return World(db, service_id)


async def seed(world: World) -> None:
    """web-1 on a, web-2 on b, a stopped web-3 on a, sidecar on a, ghost on offline c."""
    sid = world.service_id
    await world.save("a", inspect("d1", "web-1", service_id=sid, number=1))
    await world.save("b", inspect("d2", "web-2", service_id=sid, number=2))
    await world.save("a", inspect("d3", "web-3", service_id=sid, number=3, running=False))
    await world.save("a", inspect("d4", "sidecar"))
    await world.save("c", inspect("d5", "ghost"))
    await world.stat("a", sample("d1", cpu=10, memory=300, rx=50, tx=900))
    await world.stat("a", sample("d4", cpu=40, memory=100, rx=10, tx=5))
    await world.stat("b", sample("d2", cpu=20, memory=200, rx=700, tx=1))
    await world.stat("c", sample("d5", cpu=99, memory=999, rx=999, tx=999))


async def names(client: httpx.AsyncClient, admin: Any, path: str) -> list[str]:
    """The ``container_id`` (names) of a stats answer, in order."""
    response = await client.get(path, headers=admin.headers)
    assert response.status_code == 200, response.text
    return [item["container_id"] for item in response.json()["stats"]]


async def test_stats_list_running_containers_of_connected_nodes_sorted(
    client: httpx.AsyncClient, admin: Any, world: World
) -> None:
    await seed(world)
    assert await names(client, admin, "/v1/grids/main/stats") == ["sidecar", "web-2", "web-1"]
    assert await names(client, admin, "/v1/grids/main/stats?sort=memory") == [
        "web-1",
        "web-2",
        "sidecar",
    ]
    assert await names(client, admin, "/v1/grids/main/stats?sort=rx_bytes&limit=2") == [
        "web-2",
        "web-1",
    ]
    assert await names(client, admin, "/v1/grids/main/stats?sort=tx_bytes") == [
        "web-1",
        "sidecar",
        "web-2",
    ]
    assert await names(client, admin, "/v1/nodes/main/a/stats") == ["sidecar", "web-1"]
    assert await names(client, admin, "/v1/nodes/main/b/stats?sort=memory") == ["web-2"]
    assert await names(client, admin, "/v1/nodes/main/c/stats") == []  # offline node
    assert await names(client, admin, f"{SVC}/stats?sort=cpu") == ["web-2", "web-1"]
    response = await client.get("/v1/nodes/main/a/stats?sort=memory&limit=1", headers=admin.headers)
    assert response.json() == {
        "stats": [
            {
                "container_id": "web-1",
                "cpu": {"usage": 10, "limit": 1024, "num_cores": 2},
                "memory": {"usage": 300, "limit": 1000},
                "network": sample("d1", cpu=10, memory=300, rx=50, tx=900)["network"],
            }
        ]
    }


BAD_QUERIES = [
    ("sort=disk", {"sort": "Sort isn't an option"}),
    ("sort=CPU", {"sort": "Sort isn't an option"}),
    ("limit=many", {"limit": "Limit isn't an integer"}),
    ("limit=-1", {"limit": "Limit is too small"}),
]


async def test_bad_sort_or_limit_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, admin: Any, world: World
) -> None:
    for path in ("/v1/grids/main/stats", "/v1/nodes/main/a/stats", f"{SVC}/stats"):
        for query, error in BAD_QUERIES:
            response = await client.get(f"{path}?{query}", headers=admin.headers)
            assert (response.status_code, response.json()) == (422, {"error": error}), path


async def test_service_containers_render_kontena_container_json(
    client: httpx.AsyncClient, admin: Any, world: World
) -> None:
    await seed(world)
    # Only the service's plain env and the master's KONTENA_* are kept: not secrets, not a
    # variable the service no longer defines (a removed secret), not the image's.
    secret_env = [
        "PATH=/bin",
        "GREETING=hi",
        "PASSWORD=s3cret-value",
        "OLD_TOKEN=t0ken-value",
        "KONTENA_SERVICE_INSTANCE_NUMBER=1",
    ]
    await world.save("a", inspect("d1", "web-1", service_id=world.service_id, env=secret_env))
    response = await client.get(f"{SVC}/containers", headers=admin.headers)
    assert response.status_code == 200, response.text
    listed = response.json()["containers"]
    # Oldest first, stopped ones included; not the sidecar, not the offline node's.
    assert [c["name"] for c in listed] == ["web-1", "web-2", "web-3"]
    first = dict(listed[0])
    assert "s3cret-value" not in response.text and "t0ken-value" not in response.text
    assert first["env"] == ["GREETING=hi", "KONTENA_SERVICE_INSTANCE_NUMBER=1"]
    for key in ("created_at", "updated_at", "node"):
        first.pop(key)
    assert first == {
        "id": "main/a/web-1",
        "name": "web-1",
        "container_id": "d1",
        "grid_id": "main",
        "service_id": "main/null/web",
        "started_at": "2024-05-01T11:59:00.123Z",
        "finished_at": None,
        "deleted_at": None,
        "status": "running",
        "state": {
            "error": "",
            "exit_code": 0,
            "pid": 42,
            "oom_killed": False,
            "paused": False,
            "restarting": False,
            "dead": False,
            "running": True,
        },
        "deploy_rev": "rev-1",
        "service_rev": "3",
        "instance_number": 1,
        "image": "busybox:latest",
        "cmd": ["httpd", "-f"],
        "env": ["GREETING=hi", "KONTENA_SERVICE_INSTANCE_NUMBER=1"],
        "volumes": [],
        "ip_address": "172.17.0.2",
        "hostname": "web-1",
        "domainname": "main.kontena.local",
        "network_settings": {
            "ip_address": "172.17.0.2",
            "ports": {},
            "bridge": {"ip_address": "172.17.0.2", "gateway": "172.17.0.1"},
        },
    }
    node = listed[0]["node"]
    assert (node["id"], node["name"], node["connected"], node["labels"]) == (
        "ID:A",
        "a",
        True,
        ["az=a"],
    )
    assert node["grid"] == {"id": "main", "name": "main", "initial_size": 1}
    assert listed[2]["status"] == "stopped" and listed[2]["state"]["exit_code"] == 137


async def test_saves_update_in_place_and_cleanup_or_destroy_removes(
    client: httpx.AsyncClient, admin: Any, world: World, db: Database
) -> None:
    await seed(world)
    # The same container saved again: one row, updated (now stopped).
    await world.save("a", inspect("d1", "web-1", service_id=world.service_id, running=False))
    async with db.session() as session:
        rows = (
            await session.scalars(select(Container).where(Container.container_id == "d1"))
        ).all()
    assert len(rows) == 1 and rows[0].running is False
    # Node a still has d1 and d4: d3 goes; other nodes' records stay.
    await world.send("a", "/containers/cleanup", ["ID:A", ["d1", "d4"]])
    await world.send("b", "/containers/event", [{"id": "d2", "status": "destroy"}])
    await world.send("b", "/containers/event", [{"id": "nope", "status": "start"}])
    async with db.session() as session:
        left = set((await session.scalars(select(Container.container_id))).all())
    assert left == {"d1", "d4", "d5"}
    # Stats of containers the master does not know are dropped, as Kontena did.
    await world.stat("b", sample("d2", cpu=1, memory=1, rx=1, tx=1))
    await world.stat("a", sample("d5", cpu=1, memory=1, rx=1, tx=1))  # d5 is node c's
    async with db.session() as session:
        kept = (await session.scalars(select(ContainerStat.container_id))).all()
    assert sorted(kept) == ["d1", "d2", "d4", "d5"]  # the four samples of seed()


async def test_bad_agent_messages_are_refused(world: World) -> None:
    for method, params in (
        ("/containers/save", []),
        ("/containers/save", [{"node": "a"}]),
        ("/containers/save", [{"node": "a", "container": {"Name": "/x"}}]),
        ("/containers/cleanup", ["ID:A"]),
        ("/containers/cleanup", ["ID:A", "d1"]),
    ):
        with pytest.raises(AgentError) as refused:
            await world.send("a", method, params)
        assert refused.value.code == 400, (method, params)
    # A label naming a service of no grid of ours leaves the container without a service.
    await world.save("a", inspect("d9", "stray", service_id="0" * 24))
    async with world.db.session() as session:
        stray = (await session.scalars(select(Container).where(Container.name == "stray"))).one()
    assert stray.service_id is None and stray.instance_number == 1
    assert await world.send("a", "/containers/stat", [{"no": "id"}, "junk"]) is None


async def test_service_metrics_sum_containers_per_minute(
    client: httpx.AsyncClient, admin: Any, world: World, db: Database
) -> None:
    await seed(world)
    async with db.session() as session:
        await session.execute(update(ContainerStat).values(created_at=T0 + timedelta(seconds=10)))
        await session.commit()
    at = T0 + timedelta(seconds=40)
    await world.stat("a", sample("d1", cpu=30, memory=500, rx=150, tx=1000), at=at)
    at = T0 + timedelta(minutes=2, seconds=5)
    await world.stat("b", sample("d2", cpu=5, memory=100, rx=800, tx=2), at=at)
    response = await client.get(f"{SVC}/metrics?{WINDOW}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:10:00Z")
    first, second = body["stats"]
    assert first["timestamp"] == "2024-05-01T12:00:00Z"
    # web-1 averages 20 % and 400 bytes over its two samples; web-2 adds 20 % and 200 bytes.
    assert first["cpu"] == {"used": 40.0, "cores": 4}  # two nodes of two cores
    assert first["memory"] == {"used": 600, "total": 2000}
    external = first["network"]["external"]
    assert (external["rx_bytes"], external["tx_bytes"]) == (100 + 700, 950 + 1)
    assert external["interfaces"] == ["eth0"]
    assert second["timestamp"] == "2024-05-01T12:02:00Z"
    assert second["cpu"] == {"used": 5.0, "cores": 2}
    assert second["memory"] == {"used": 100, "total": 1000}
    # The sidecar (no service) and the window's edges stay out.
    late = await client.get(
        f"{SVC}/metrics?from=2024-05-01T12:01:00Z&to=2024-05-01T12:01:59Z", headers=admin.headers
    )
    assert late.json()["stats"] == []
    bad = await client.get(f"{SVC}/metrics?from=yesterday", headers=admin.headers)
    assert (bad.status_code, bad.json()) == (422, {"error": {"from": "From isn't a valid time"}})


async def test_service_metrics_default_to_the_last_hour(
    client: httpx.AsyncClient, admin: Any, world: World
) -> None:
    await seed(world)
    response = await client.get(f"{SVC}/metrics", headers=admin.headers)
    body = response.json()
    start = datetime.fromisoformat(body["from"])
    end = datetime.fromisoformat(body["to"])
    assert end - start == timedelta(hours=1)
    # web-1 and web-2 reported just now (a minute boundary may fall between them).
    assert sum(point["memory"]["used"] for point in body["stats"]) == 500


async def test_removing_a_node_or_service_removes_its_records(
    client: httpx.AsyncClient, admin: Any, world: World, db: Database
) -> None:
    await seed(world)
    assert (await client.delete("/v1/nodes/main/b", headers=admin.headers)).status_code == 200
    async with db.session() as session:
        left = set((await session.scalars(select(Container.container_id))).all())
        stats = await session.scalar(select(func.count()).select_from(ContainerStat))
    assert left == {"d1", "d3", "d4", "d5"} and stats == 3


async def test_service_metrics_and_container_handlers_run_on_sqlite(tmp_path: Path) -> None:
    """Embedded mode: the same handlers and per-minute aggregation on SQLite."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kontena.db'}"
    await asyncio.to_thread(upgrade, url)
    database = Database(url)
    try:
        async with database.session() as session:
            grid = Grid(name="main", token_hash="h", token_encrypted="x")
            session.add(grid)
            await session.flush()
            nodes = [
                Node(grid_id=grid.id, name=name, node_number=i, connected=True)
                for i, name in enumerate(("a", "b"), start=1)
            ]
            service = Service(grid_id=grid.id, name="web", image="busybox")
            session.add_all([*nodes, service])
            await session.commit()
        world = World(database, service.id)
        await world.save("a", inspect("d1", "web-1", service_id=service.id))
        await world.save("b", inspect("d2", "web-2", service_id=service.id, number=2))
        await world.stat("a", sample("d1", cpu=10, memory=300, rx=50, tx=900), at=T0)
        await world.stat("b", sample("d2", cpu=20, memory=200, rx=700, tx=1), at=T0)
        await world.send("b", "/containers/cleanup", ["ID:B", []])
        async with database.session() as session:
            metrics = await service_metrics(session, service.id, T0, T0 + timedelta(minutes=5))
            left = (await session.scalars(select(Container.name))).all()
        [point] = metrics.stats
        assert (point.cpu.used, point.cpu.cores, point.memory.used) == (30.0, 4, 500)
        assert point.network.external.rx_bytes == 750
        assert left == ["web-1"]
    finally:
        await database.dispose()
