"""``GET /v1/grids/:name/event_logs``: Kontena's paging rules, filters and the followed stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from models import EventLog, Grid
from models.db import Database

ENTRY_KEYS = {"id", "created_at", "severity", "type", "message", "meta", "relationships"}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def grid_id(client: httpx.AsyncClient, admin: Any, db: Database) -> str:
    """The id of grid ``main`` (whose creation wrote a ``grid:create`` event, removed here)."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    async with db.session() as session:
        grid = (await session.execute(select(Grid).where(Grid.name == "main"))).scalar_one()
        for entry in (await session.execute(select(EventLog))).scalars():
            await session.delete(entry)
        await session.commit()
        return grid.id


async def add_events(db: Database, grid_id: str, count: int, **fields: Any) -> list[int]:
    """Insert ``count`` events one second apart from T0 (or after the given created_at)."""
    start = fields.pop("created_at", T0)
    rows = [
        EventLog(
            grid_id=grid_id,
            type=fields.get("type", "service:deploy"),
            message=f"event {i}",
            created_at=start + timedelta(seconds=i),
            **{k: v for k, v in fields.items() if k != "type"},
        )
        for i in range(count)
    ]
    async with db.session() as session:
        session.add_all(rows)
        await session.commit()
    return [row.id for row in rows]


async def get_logs(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get("/v1/grids/main/event_logs", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["logs"]


async def test_entry_shape_and_relationships(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    [plain] = await add_events(db, grid_id, 1)
    [full] = await add_events(
        db,
        grid_id,
        1,
        stack="web",
        service="api",
        node="node-1",
        volume="data",
        severity=3,
        meta={"instance": 2},
    )
    [stackless] = await add_events(db, grid_id, 1, service="lb")
    logs = await get_logs(client, admin.headers)
    assert [set(e) for e in logs] == [ENTRY_KEYS] * 3
    assert logs[0] == {
        "id": str(plain),
        "created_at": "2024-01-01T00:00:00Z",
        "severity": 1,
        "type": "service:deploy",
        "message": "event 0",
        "meta": {},
        "relationships": [{"id": "main", "type": "grid"}],
    }
    assert logs[1]["id"] == str(full)
    assert logs[1]["severity"] == 3
    assert logs[1]["meta"] == {"instance": 2}
    assert logs[1]["relationships"] == [
        {"id": "main", "type": "grid"},
        {"id": "main/web", "type": "stack"},
        {"id": "main/web/api", "type": "service"},
        {"id": "main/data", "type": "volume"},
        {"id": "main/node-1", "type": "node"},
    ]
    assert logs[2]["id"] == str(stackless)
    assert logs[2]["relationships"][1:] == [
        {"id": "main/null", "type": "stack"},
        {"id": "main/null/lb", "type": "service"},
    ]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, 100), ("abc", 100), ("0", 100), ("-5", 100), ("5", 5), ("7x", 7), ("99999", 150)],
)
async def test_limit_returns_the_newest_oldest_first(
    client: httpx.AsyncClient,
    admin: Any,
    db: Database,
    grid_id: str,
    limit: str | None,
    expected: int,
) -> None:
    ids = await add_events(db, grid_id, 150)
    params = {} if limit is None else {"limit": limit}
    logs = await get_logs(client, admin.headers, **params)
    assert [int(e["id"]) for e in logs] == ids[-expected:]


async def test_from_is_an_exclusive_cursor_ascending(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    ids = await add_events(db, grid_id, 30)
    logs = await get_logs(client, admin.headers, **{"from": ids[9], "limit": 5})
    assert [int(e["id"]) for e in logs] == ids[10:15]
    # `since` is ignored when a cursor is given.
    since = (T0 + timedelta(seconds=25)).isoformat()
    logs = await get_logs(client, admin.headers, **{"from": ids[19], "since": since})
    assert [int(e["id"]) for e in logs] == ids[20:]
    assert await get_logs(client, admin.headers, **{"from": ids[-1]}) == []


async def test_non_numeric_from_names_the_parameter(
    client: httpx.AsyncClient, admin: Any, grid_id: str
) -> None:
    response = await client.get(
        "/v1/grids/main/event_logs", params={"from": "5f0c"}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json() == {"error": {"from": "From isn't an integer"}}


async def test_since_filters_by_time(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    ids = await add_events(db, grid_id, 20)
    since = T0 + timedelta(seconds=14, milliseconds=500)
    logs = await get_logs(client, admin.headers, since=since.isoformat())
    assert [int(e["id"]) for e in logs] == ids[15:]
    zulu = await get_logs(client, admin.headers, since="2024-01-01T00:00:17Z", limit=2)
    assert [int(e["id"]) for e in zulu] == ids[18:]
    naive = await get_logs(client, admin.headers, since="2024-01-01T00:00:18")
    assert [int(e["id"]) for e in naive] == ids[19:]
    unparsable = await get_logs(client, admin.headers, since="yesterday")
    assert len(unparsable) == 20


async def test_filters_by_nodes_stacks_and_services(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    [a] = await add_events(db, grid_id, 1, node="n1", stack="web", service="api")
    [b] = await add_events(db, grid_id, 1, node="n2", stack="web", service="db")
    [c] = await add_events(db, grid_id, 1, node="n1", stack="null", service="lb")
    [d] = await add_events(db, grid_id, 1, stack="ops")

    async def ids(**params: str) -> list[int]:
        return [int(e["id"]) for e in await get_logs(client, admin.headers, **params)]

    assert await ids(nodes="n1") == [a, c]
    assert await ids(nodes="n1,n2") == [a, b, c]
    assert await ids(stacks="web") == [a, b]
    assert await ids(stacks="web, ops") == [a, b, d]
    assert await ids(services="web/db") == [b]
    assert await ids(services="web/api,null/lb") == [a, c]
    assert await ids(services="lb") == [c]  # a bare name is a stack-less service
    assert await ids(nodes="n1", stacks="web") == [a]
    assert await ids(nodes="nope") == []


async def test_other_grids_events_are_not_shown(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    response = await client.post("/v1/grids", json={"name": "second"}, headers=admin.headers)
    assert response.status_code == 201
    [mine] = await add_events(db, grid_id, 1)
    logs = await get_logs(client, admin.headers)
    assert [int(e["id"]) for e in logs] == [mine]


class StreamReader:
    """Splits a followed stream into JSON objects and keep-alive spaces."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = ""
        self.spaces = 0
        self.decoder = json.JSONDecoder()

    def _take(self) -> dict[str, Any] | None:
        stripped = self.buffer.lstrip(" ")
        self.spaces += len(self.buffer) - len(stripped)
        self.buffer = stripped
        if not self.buffer:
            return None
        try:
            entry, end = self.decoder.raw_decode(self.buffer)
        except json.JSONDecodeError:
            return None  # an object split across chunks
        self.buffer = self.buffer[end:]
        return dict(entry)

    async def next_entry(self, deadline: float) -> dict[str, Any]:
        """The next JSON object, or TimeoutError after ``deadline`` seconds."""
        async with asyncio.timeout(deadline):
            while (entry := self._take()) is None:
                self.buffer += (await anext(self.chunks)).decode()
            return entry

    async def wait_for_spaces(self, count: int, deadline: float) -> None:
        """Read until ``count`` keep-alive spaces have arrived."""
        async with asyncio.timeout(deadline):
            while self.spaces < count:
                assert self._take() is None, "no entry expected while idle"
                self.buffer += (await anext(self.chunks)).decode()
                self._take()


async def test_follow_streams_new_events_and_resumes_without_gaps(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    ids = await add_events(db, grid_id, 3)
    url = "/v1/grids/main/event_logs"
    params = {"follow": "1", "limit": "2"}
    async with client.stream("GET", url, params=params, headers=admin.headers) as response:
        assert response.status_code == 200
        reader = StreamReader(response.aiter_raw())
        first = [await reader.next_entry(5) for _ in range(2)]
        assert [int(e["id"]) for e in first] == ids[1:]

        # A new event arrives within a second of being committed.
        loop = asyncio.get_running_loop()
        [new] = await add_events(db, grid_id, 1, created_at=datetime.now(UTC))
        committed = loop.time()
        entry = await reader.next_entry(5)
        assert int(entry["id"]) == new
        assert loop.time() - committed < 1.0
        assert set(entry) == ENTRY_KEYS

        # While idle the server writes keep-alive spaces, about two a second.
        before = reader.spaces
        started = loop.time()
        await reader.wait_for_spaces(before + 2, deadline=3)
        assert loop.time() - started < 2.0
        last_seen = int(entry["id"])

    # Events written while disconnected are all there when resuming from the last id.
    missed = await add_events(db, grid_id, 3, created_at=datetime.now(UTC))
    resume = {"follow": "1", "from": str(last_seen)}
    async with client.stream("GET", url, params=resume, headers=admin.headers) as response:
        reader = StreamReader(response.aiter_raw())
        again = [await reader.next_entry(5) for _ in range(3)]
        assert [int(e["id"]) for e in again] == missed


async def test_follow_holds_no_connection_while_idle_and_stops_on_disconnect(
    client: httpx.AsyncClient, admin: Any, db: Database, grid_id: str
) -> None:
    polls = 0

    def count_polls(*args: Any) -> None:
        nonlocal polls
        if "FROM event_logs" in args[2]:
            polls += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count_polls)
    loop = asyncio.get_running_loop()
    try:
        url = "/v1/grids/main/event_logs"
        async with client.stream(
            "GET", url, params={"follow": "yes"}, headers=admin.headers
        ) as response:
            reader = StreamReader(response.aiter_raw())
            await reader.wait_for_spaces(2, deadline=3)
            samples = []
            end = loop.time() + 1.0
            while loop.time() < end:
                samples.append(db.engine.pool.checkedout())  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)
            assert samples.count(0) >= len(samples) * 0.8
            assert polls >= 2
        # After the client leaves the server stops polling: the count settles.
        settled = False
        deadline = loop.time() + 5
        while loop.time() < deadline and not settled:
            seen = polls
            await asyncio.sleep(1.2)  # longer than two poll intervals
            settled = polls == seen
        assert settled
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count_polls)
