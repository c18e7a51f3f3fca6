"""Container logs: exactly-once storage of agent batches, the two routes, follow, retention."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.container_logs import log_cursors, prune_container_logs, store_batch
from core.protocol import LogLine
from models import ContainerLog, ContainerLogCursor, Node, Service
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.service_rows import create_service

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTRY_KEYS = {
    "id",
    "name",
    "container_id",
    "service",
    "stack",
    "grid",
    "node",
    "instance_number",
    "created_at",
    "type",
    "data",
}


def stamp(second: float) -> str:
    """Docker's RFC 3339 nano timestamp ``second`` seconds after T0."""
    moment = T0 + timedelta(seconds=second)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def line(
    service_id: str,
    data: str,
    second: float,
    *,
    seq: int = 0,
    stream: str = "stdout",
    container: str = "c1",
    name: str = "web-1",
    instance: int = 1,
) -> LogLine:
    """A line as the agent sends it."""
    return LogLine(
        id=container,
        name=name,
        service_id=service_id,
        instance_number=instance,
        type=stream,
        time=stamp(second),
        seq=seq,
        data=data,
    )


@pytest.fixture
async def world(client: httpx.AsyncClient, admin: Caller, db: Database) -> dict[str, Any]:
    """Grid ``main`` with nodes n1/n2, services ``web`` and ``db``; returns their rows' ids."""
    created = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert created.status_code == 201, created.text
    for name in ("n1", "n2"):
        node = await client.post("/v1/grids/main/nodes", json={"name": name}, headers=admin.headers)
        assert node.status_code == 201, node.text
    await create_service(client, admin.headers, name="web")
    await create_service(client, admin.headers, name="db")
    async with db.session() as session:
        nodes = {n.name: n.id for n in (await session.execute(select(Node))).scalars()}
        services = {s.name: s.id for s in (await session.execute(select(Service))).scalars()}
    return {"nodes": nodes, "services": services}


async def store(db: Database, node_id: str, lines: list[LogLine], **kw: Any) -> int:
    """One agent batch, in its own transaction as the agent socket runs it."""
    async with db.session() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        stored = await store_batch(session, node, lines, **kw)
        await session.commit()
        return stored


async def stored_data(db: Database) -> list[str]:
    """Every stored line's data, by id."""
    async with db.session() as session:
        rows = await session.execute(select(ContainerLog.data).order_by(ContainerLog.id))
        return list(rows.scalars())


async def get_logs(
    client: httpx.AsyncClient, caller: Caller, path: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(path, params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    logs: list[dict[str, Any]] = response.json()["logs"]
    return logs


# --- storage -------------------------------------------------------------------------------


async def test_a_resent_batch_is_stored_once_and_lines_sharing_a_timestamp_are_kept(
    world: dict[str, Any], db: Database
) -> None:
    web, n1 = world["services"]["web"], world["nodes"]["n1"]
    first = [line(web, "a", 1), line(web, "b", 1, seq=1), line(web, "c", 2)]
    assert await store(db, n1, first) == 3
    # The answer was lost: the agent sends the batch again with one more line.
    assert await store(db, n1, [*first, line(web, "d", 2, seq=1)]) == 1
    # stderr has a cursor of its own.
    assert await store(db, n1, [line(web, "e", 1, stream="stderr")]) == 1
    assert await stored_data(db) == ["a", "b", "c", "d", "e"]
    async with db.session() as session:
        node = await session.get(Node, n1)
        assert node is not None
        cursors = await log_cursors(session, node, "c1")
        unknown = await log_cursors(session, node, "c2")
    assert cursors == {"stdout": [1767225602000000000, 1], "stderr": [1767225601000000000, 0]}
    assert unknown == {"stdout": None, "stderr": None}


async def test_lines_of_foreign_services_or_past_retention_are_dropped_but_not_resent(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any], db: Database
) -> None:
    await client.post("/v1/grids", json={"name": "other"}, headers=admin.headers)
    foreign = (await create_service(client, admin.headers, grid="other", name="x"))["id"]
    async with db.session() as session:
        foreign_id = (
            await session.execute(select(Service.id).where(Service.name == "x"))
        ).scalar_one()
    assert foreign  # the API id; rows carry the database id
    web, n1 = world["services"]["web"], world["nodes"]["n1"]
    lines = [line(foreign_id, "foreign", 1, container="c9"), line(web, "old", 1)]
    assert await store(db, n1, lines, oldest=T0 + timedelta(seconds=5)) == 0
    assert await store(db, n1, [*lines, line(web, "new", 6)]) == 1
    assert await stored_data(db) == ["new"]


async def test_malformed_lines_are_dropped_without_a_cursor(
    world: dict[str, Any], db: Database
) -> None:
    web, n1 = world["services"]["web"], world["nodes"]["n1"]
    bad = [
        line(web, "stdin?", 1, stream="stdin"),
        line(web, "long id", 1, container="c" * 65),
        line(web, "huge number", 1, instance=2**40),
    ]
    assert await store(db, n1, bad) == 0
    assert await count(db, ContainerLogCursor) == 0
    assert await store(db, n1, [*bad, line(web, "fine", 2)]) == 1
    assert await stored_data(db) == ["fine"]


async def test_bad_batches_get_an_error_answer(world: dict[str, Any], db: Database) -> None:
    from core.container_log_rpc import save_batch
    from core.node_updates import AgentError

    async with db.session() as session:
        node = await session.get(Node, world["nodes"]["n1"])
        assert node is not None
        for params in ([], ["id"], ["id", [{"id": "c1"}]], ["id", "nope"]):
            with pytest.raises(AgentError) as raised:
                await save_batch(session, node, params)
            assert raised.value.code == 400
        bad_time = msgspec_line(world["services"]["web"], time="yesterday")
        with pytest.raises(AgentError, match="invalid log line"):
            await save_batch(session, node, ["id", [bad_time]])


def msgspec_line(service_id: str, **changes: Any) -> dict[str, Any]:
    """A wire line (a dict) with some fields changed."""
    wire = {
        "id": "c1",
        "name": "web-1",
        "service_id": service_id,
        "instance_number": 1,
        "type": "stdout",
        "time": stamp(1),
        "seq": 0,
        "data": "x",
    }
    wire.update(changes)
    return wire


# --- reading -------------------------------------------------------------------------------


async def seed(world: dict[str, Any], db: Database) -> None:
    """web-1 on n1 (5 lines), web-2 on n2 (2 lines), db-1 on n2 (1 line), interleaved."""
    web, dbs = world["services"]["web"], world["services"]["db"]
    n1, n2 = world["nodes"]["n1"], world["nodes"]["n2"]
    await store(db, n1, [line(web, f"w1-{i}", i) for i in range(3)])
    await store(db, n2, [line(web, "w2-0", 3, container="c2", name="web-2", instance=2)])
    await store(db, n2, [line(dbs, "db-0", 4, container="c3", name="db-1")])
    await store(db, n1, [line(web, f"w1-{i}", i) for i in range(3, 5)])
    await store(
        db, n2, [line(web, "w2-1", 5, container="c2", name="web-2", instance=2, stream="stderr")]
    )


async def test_service_logs_page_like_kontena(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any], db: Database
) -> None:
    await seed(world, db)
    path = "/v1/services/main/null/web/container_logs"
    every = await get_logs(client, admin, path)
    assert [e["data"] for e in every] == ["w1-0", "w1-1", "w1-2", "w2-0", "w1-3", "w1-4", "w2-1"]
    entry = every[-1]
    assert set(entry) == ENTRY_KEYS
    assert entry["name"] == "web-2" and entry["instance_number"] == 2
    assert entry["type"] == "stderr" and entry["container_id"] == "c2"
    assert entry["service"] == {"id": "main/null/web", "name": "web"}
    assert entry["stack"] == {"id": "main/null", "name": "null"}
    assert entry["grid"] == {"id": "main", "name": "main"}
    assert entry["node"] == {"name": "n2"}
    assert entry["created_at"].startswith("2026-01-01T00:00:05")
    # newest `limit`, oldest first; `from` is an exclusive cursor; `since` only without it.
    assert [e["data"] for e in await get_logs(client, admin, path, limit=2)] == ["w1-4", "w2-1"]
    after = await get_logs(client, admin, path, **{"from": every[2]["id"], "limit": 2})
    assert [e["data"] for e in after] == ["w2-0", "w1-3"]
    since = await get_logs(client, admin, path, since=stamp(3.5).replace("000Z", "Z"))
    assert [e["data"] for e in since] == ["w1-4", "w2-1"]
    for junk in ("0", "-5", "abc", ""):
        assert len(await get_logs(client, admin, path, limit=junk)) == 7
    assert len(await get_logs(client, admin, path, since="not a time")) == 7
    # filters: container names, instance numbers
    by_name = await get_logs(client, admin, path, container="web-2")
    assert [e["data"] for e in by_name] == ["w2-0", "w2-1"]
    by_number = await get_logs(client, admin, path, instance="1")
    assert [e["data"] for e in by_number] == ["w1-0", "w1-1", "w1-2", "w1-3", "w1-4"]
    other = await get_logs(client, admin, "/v1/services/main/null/db/container_logs")
    assert [e["data"] for e in other] == ["db-0"]


async def test_grid_logs_filter_by_containers_nodes_and_services(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any], db: Database
) -> None:
    await seed(world, db)
    path = "/v1/grids/main/container_logs"

    async def data(**params: Any) -> list[str]:
        return [e["data"] for e in await get_logs(client, admin, path, **params)]

    assert len(await data()) == 8
    assert await data(nodes="n2") == ["w2-0", "db-0", "w2-1"]
    assert await data(services="db") == ["db-0"]
    assert await data(services="null/db,web", nodes="n2") == ["w2-0", "db-0", "w2-1"]
    assert await data(containers="web-2,db-1") == ["w2-0", "db-0", "w2-1"]
    assert await data(services="nostack/web") == []


@pytest.mark.parametrize(
    ("path", "params", "error"),
    [
        ("/v1/grids/main/container_logs", {"from": "abc"}, {"from": "From isn't an integer"}),
        (
            "/v1/services/main/null/web/container_logs",
            {"from": "1x"},
            {"from": "From isn't an integer"},
        ),
        (
            "/v1/services/main/null/web/container_logs",
            {"instance": "one"},
            {"instance": "Instance isn't an integer"},
        ),
        ("/v1/services/main/null/web/event_logs", {"from": "z"}, {"from": "From isn't an integer"}),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    client: httpx.AsyncClient,
    admin: Caller,
    world: dict[str, Any],
    path: str,
    params: dict[str, str],
    error: dict[str, str],
) -> None:
    response = await client.get(path, params=params, headers=admin.headers)
    assert response.status_code == 422
    assert response.json() == {"error": error}


async def test_unknown_services_and_grids_are_404(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any]
) -> None:
    for path in (
        "/v1/services/main/null/nope/container_logs",
        "/v1/services/main/nostack/web/container_logs",
        "/v1/services/main/null/nope/event_logs",
        "/v1/grids/nope/container_logs",
        "/v1/services/nope/null/web/container_logs",
    ):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 404, path
        assert response.json() == {"error": "Not found"}


async def read_entries(chunks: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` JSON objects of a follow stream (bare objects, spaces between)."""
    decoder = json.JSONDecoder()
    buffer, found = "", []
    async for chunk in chunks:
        buffer = (buffer + chunk.decode()).lstrip()
        while buffer:
            try:
                entry, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break
            found.append(entry)
            buffer = buffer[end:].lstrip()
            if len(found) == count:
                return found
    raise AssertionError("stream ended")


async def test_follow_streams_new_lines_and_resumes_from_the_last_id(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any], db: Database
) -> None:
    """The stream polls the database, so lines stored by any process (replica) reach it."""
    await seed(world, db)
    web, n1 = world["services"]["web"], world["nodes"]["n1"]
    path = "/v1/services/main/null/web/container_logs"
    params = {"follow": "1", "limit": "2"}
    async with client.stream("GET", path, params=params, headers=admin.headers) as stream:
        assert stream.status_code == 200
        chunks = stream.aiter_bytes()
        first = await asyncio.wait_for(read_entries(chunks, 2), 10)
        assert [e["data"] for e in first] == ["w1-4", "w2-1"]
        await store(db, n1, [line(web, "live-1", 10), line(web, "live-2", 11)])
        live = await asyncio.wait_for(read_entries(chunks, 2), 10)
        assert [e["data"] for e in live] == ["live-1", "live-2"]
    # A client that reconnects with the last id it saw misses nothing.
    await store(db, n1, [line(web, "while-away", 12)])
    params = {"follow": "1", "from": live[-1]["id"]}
    async with client.stream("GET", path, params=params, headers=admin.headers) as stream:
        resumed = await asyncio.wait_for(read_entries(stream.aiter_bytes(), 1), 10)
    assert [e["data"] for e in resumed] == ["while-away"]


# --- retention -----------------------------------------------------------------------------


async def count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_retention_by_age_and_by_line_count(world: dict[str, Any], db: Database) -> None:
    web, n1 = world["services"]["web"], world["nodes"]["n1"]
    now = utcnow()
    base = (now - T0).total_seconds()
    # 10 lines one hour apart, the newest one hour old.
    await store(db, n1, [line(web, f"l{i}", base - 3600 * (10 - i)) for i in range(10)])
    async with db.session() as session:
        deleted = await prune_container_logs(session, now, timedelta(hours=5, minutes=30), 0)
        await session.commit()
    assert deleted == 5
    assert await stored_data(db) == ["l5", "l6", "l7", "l8", "l9"]
    async with db.session() as session:
        deleted = await prune_container_logs(session, now, timedelta(days=1), 2)
        await session.commit()
    assert deleted == 3
    assert await stored_data(db) == ["l8", "l9"]
    assert await count(db, ContainerLogCursor) == 1
    async with db.session() as session:
        await prune_container_logs(session, now + timedelta(days=2), timedelta(days=1), 0)
        await session.commit()
    assert await stored_data(db) == []
    assert await count(db, ContainerLogCursor) == 0  # unused for longer than the age limit


async def test_stack_logs_cover_every_service_of_the_stack(
    client: httpx.AsyncClient, admin: Caller, world: dict[str, Any], db: Database
) -> None:
    """``GET /v1/stacks/:grid/:stack/container_logs``: the stack's lines, ``container`` filter."""
    body = {
        "name": "cache",
        "stack": "me/cache",
        "version": "1.0.0",
        "source": "services: ...",
        "services": [
            {"name": "redis", "image": "redis", "stateful": False},
            {"name": "sentinel", "image": "redis", "stateful": False},
        ],
    }
    created = await client.post("/v1/grids/main/stacks", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    async with db.session() as session:
        ids = {
            s.name: s.id
            for s in (await session.execute(select(Service).where(Service.stack == "cache")))
            .scalars()
            .all()
        }
    n1 = world["nodes"]["n1"]
    await store(db, n1, [line(ids["redis"], "r", 1, container="r1", name="cache.redis-1")])
    await store(db, n1, [line(world["services"]["web"], "w", 2)])
    await store(db, n1, [line(ids["sentinel"], "s", 3, container="s1", name="cache.sentinel-1")])
    path = "/v1/stacks/main/cache/container_logs"
    assert [e["data"] for e in await get_logs(client, admin, path)] == ["r", "s"]
    one = await get_logs(client, admin, path, container="cache.sentinel-1")
    assert [e["data"] for e in one] == ["s"]
    assert set(one[0]) == ENTRY_KEYS
    missing = await client.get("/v1/stacks/main/nope/container_logs", headers=admin.headers)
    assert missing.status_code == 404
