"""The Node API: create, list, read, update, remove, node tokens, and the node JSON's shape."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from core import node_status
from core import nodes as core_nodes
from core.nodes import token_context
from core.runtime import Runtime
from core.tokens import digest
from core.vault import Vault
from models import AuditLog, EventLog, Node, NodeStat
from models.db import Database
from tests.fixtures.audit import assert_audited, assert_no_unaudited_requests

NODE_KEYS = {
    "id",
    "node_id",
    "connected",
    "updated",
    "availability",
    "created_at",
    "updated_at",
    "connected_at",
    "last_seen_at",
    "disconnected_at",
    "status",
    "has_token",
    "name",
    "os",
    "engine_root_dir",
    "driver",
    "network_drivers",
    "volume_drivers",
    "kernel_version",
    "labels",
    "mem_total",
    "mem_limit",
    "cpus",
    "public_ip",
    "private_ip",
    "overlay_ip",
    "agent_version",
    "docker_version",
    "peer_ips",
    "node_number",
    "initial_member",
    "grid",
    "resource_usage",
}
NODE_GRID_KEYS = {
    "id",
    "name",
    "initial_size",
    "token",
    "stats",
    "trusted_subnets",
    "subnet",
    "supernet",
}


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    """A grid ``main`` created through the API, initial size 2."""
    response = await client.post(
        "/v1/grids", json={"name": "main", "initial_size": 2}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_node(
    client: httpx.AsyncClient, headers: dict[str, str], grid: str = "main", **body: Any
) -> dict[str, Any]:
    """Create a node and return its JSON."""
    response = await client.post(f"/v1/grids/{grid}/nodes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def node_rows(db: Database) -> list[Node]:
    """Every stored node, by name."""
    async with db.session() as session:
        return list(await session.scalars(select(Node).order_by(Node.name)))


async def set_node(db: Database, name: str, **values: Any) -> None:
    """Change a stored node's columns, as the agent connection would."""
    async with db.session() as session:
        await session.execute(update(Node).where(Node.name == name).values(**values))
        await session.commit()


async def test_create_node_renders_every_key(
    client: httpx.AsyncClient, admin: Any, grid: dict[str, Any]
) -> None:
    node = await create_node(client, admin.headers, name="node-1", labels=["region=eu", "az=a"])
    assert set(node) == NODE_KEYS
    assert set(node["grid"]) == NODE_GRID_KEYS
    created_at = datetime.fromisoformat(node.pop("created_at"))
    assert created_at.tzinfo is not None and created_at.utcoffset() == UTC.utcoffset(None)
    assert node.pop("updated_at").endswith("Z")
    assert node == {
        "id": "main/node-1",
        "node_id": None,
        "connected": False,
        "updated": False,
        "availability": "active",
        "connected_at": None,
        "last_seen_at": None,
        "disconnected_at": None,
        "status": "created",
        "has_token": True,
        "name": "node-1",
        "os": None,
        "engine_root_dir": None,
        "driver": None,
        "network_drivers": [],
        "volume_drivers": [],
        "kernel_version": None,
        "labels": ["region=eu", "az=a"],
        "mem_total": None,
        "mem_limit": None,
        "cpus": None,
        "public_ip": None,
        "private_ip": None,
        "overlay_ip": "10.81.0.1",
        "agent_version": None,
        "docker_version": None,
        "peer_ips": [],
        "node_number": 1,
        "initial_member": True,
        "grid": {
            "id": "main",
            "name": "main",
            "initial_size": 2,
            "token": grid["token"],
            "stats": {"statsd": None},
            "trusted_subnets": [],
            "subnet": "10.81.0.0/16",
            "supernet": "10.80.0.0/12",
        },
        "resource_usage": {},
    }


async def test_node_token_is_stored_hashed_and_encrypted(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database, vault: Vault
) -> None:
    await create_node(client, admin.headers, name="generated")
    await create_node(client, admin.headers, name="given", token="my-own-node-token-0123")
    shown = await client.get("/v1/nodes/main/generated/token", headers=admin.headers)
    assert shown.status_code == 200
    token = shown.json()["token"]
    assert shown.json() == {"id": "main/generated", "token": token}
    assert len(token) == 88  # base64 of 64 random bytes
    given = await client.get("/v1/nodes/main/given/token", headers=admin.headers)
    assert given.json() == {"id": "main/given", "token": "my-own-node-token-0123"}

    rows = {row.name: row for row in await node_rows(db)}
    for name, plain in (("generated", token), ("given", "my-own-node-token-0123")):
        row = rows[name]
        assert row.token_hash == digest(plain)
        assert row.token_encrypted and plain not in row.token_encrypted
        assert vault.decrypt(row.token_encrypted, context=token_context("main", name)) == plain
    # The audit entry keeps the request, never the token in it.
    entry = await assert_audited(db, "node", "create", resource_name="main/given")
    assert entry.request_body and "my-own-node-token" not in entry.request_body


async def test_node_numbers_take_the_lowest_free_number(
    client: httpx.AsyncClient, admin: Any, grid: Any
) -> None:
    for name in ("a", "b", "c"):
        await create_node(client, admin.headers, name=name)
    removed = await client.delete("/v1/nodes/main/b", headers=admin.headers)
    assert removed.status_code == 200 and removed.json() == {}
    d = await create_node(client, admin.headers, name="d")
    assert (d["node_number"], d["overlay_ip"], d["initial_member"]) == (2, "10.81.0.2", True)
    e = await create_node(client, admin.headers, name="e")
    assert (e["node_number"], e["overlay_ip"], e["initial_member"]) == (4, "10.81.0.4", False)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, {"name": "Name is required"}),
        ({"name": ""}, {"name": "Name can't be blank"}),
        ({"name": "bad name!"}, {"name": "Name isn't in the right format"}),
        ({"name": "ä-node"}, {"name": "Name isn't in the right format"}),
        ({"name": 12}, {"name": "Name isn't a string"}),
        ({"name": "n", "token": ""}, {"token": "Token can't be blank"}),
        ({"name": "n", "token": "short"}, {"token": "Token is too short"}),
        ({"name": "n", "token": "x" * 257}, {"token": "Token is too long"}),
        ({"name": "n", "labels": "a=b"}, {"labels": "Labels isn't an array"}),
        ({"name": "n", "labels": [1]}, {"labels": ["Labels[0] isn't a string"]}),
        ({"name": "existing"}, {"name": "Name is already taken"}),
        (
            {"name": "n", "token": "existing-node-token-0001"},
            {"token": "Node with token already exists"},
        ),
    ],
)
async def test_create_validation_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    body: dict[str, Any],
    error: dict[str, Any],
) -> None:
    await create_node(client, admin.headers, name="existing", token="existing-node-token-0001")
    response = await client.post("/v1/grids/main/nodes", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": error})
    assert [row.name for row in await node_rows(db)] == ["existing"]


async def test_create_rejects_bad_json(client: httpx.AsyncClient, admin: Any, grid: Any) -> None:
    response = await client.post("/v1/grids/main/nodes", content=b"{nope", headers=admin.headers)
    assert (response.status_code, response.json()) == (400, {"error": "Invalid json"})


async def test_list_is_ordered_by_name_and_counted_in_the_grid(
    client: httpx.AsyncClient, admin: Any, grid: Any
) -> None:
    for name in ("zeta", "alpha", "mid"):
        await create_node(client, admin.headers, name=name)
    listed = await client.get("/v1/grids/main/nodes", headers=admin.headers)
    assert listed.status_code == 200
    assert [n["name"] for n in listed.json()["nodes"]] == ["alpha", "mid", "zeta"]
    assert all(set(n) == NODE_KEYS for n in listed.json()["nodes"])
    shown = await client.get("/v1/grids/main", headers=admin.headers)
    assert shown.json()["node_count"] == 3
    grids = await client.get("/v1/grids", headers=admin.headers)
    assert grids.json()["grids"][0]["node_count"] == 3


async def test_grid_with_nodes_cannot_be_deleted(
    client: httpx.AsyncClient, admin: Any, grid: Any
) -> None:
    await create_node(client, admin.headers, name="n1")
    refused = await client.delete("/v1/grids/main", headers=admin.headers)
    assert (refused.status_code, refused.json()) == (422, {"error": {"grid": "Grid has nodes"}})
    assert (await client.get("/v1/grids/main", headers=admin.headers)).status_code == 200
    await client.delete("/v1/nodes/main/n1", headers=admin.headers)
    deleted = await client.delete("/v1/grids/main", headers=admin.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})


async def test_node_is_found_by_name_or_by_agent_id(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database
) -> None:
    await create_node(client, admin.headers, name="host")
    agent_id = "XI4K:NPOL:EQJT:6XQN:DRHZ:XBPZ:AT6T:TZRA:TOSB:3VHB:2PJH:XZCE"
    await set_node(db, "host", node_id=agent_id)
    by_id = await client.get(f"/v1/nodes/main/{agent_id}", headers=admin.headers)
    assert (by_id.status_code, by_id.json()["name"], by_id.json()["node_id"]) == (
        200,
        "host",
        agent_id,
    )
    by_name = await client.get("/v1/nodes/main/host", headers=admin.headers)
    assert by_name.json()["node_id"] == agent_id
    for missing in ("nope", "AAAA:BBBB"):
        response = await client.get(f"/v1/nodes/main/{missing}", headers=admin.headers)
        assert (response.status_code, response.json()) == (404, {"error": "Not found"})
    unknown_grid = await client.get("/v1/nodes/nope/host", headers=admin.headers)
    assert (unknown_grid.status_code, unknown_grid.json()) == (404, {"error": "Not found"})


async def test_agent_reported_attributes_and_resource_usage(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database
) -> None:
    await create_node(client, admin.headers, name="host")
    stats = {
        "memory": {"total": 1000, "used": 400, "free": 600, "cached": 10, "buffers": 5},
        "load": {"1m": 0.5, "5m": 0.3, "15m": 0.1},
        "filesystem": [{"name": "docker", "total": 100, "used": 10, "free": 90}],
        "cpu": {"num_cores": 2, "user": 1.5, "system": 0.5},
        "usage": {"container_seconds": 42},
        "network": {"internal": {"rx_bytes": 1}},
    }
    connected_at = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    await set_node(
        db,
        "host",
        node_id="AAAA:BBBB",
        connected=True,
        updated=True,
        connected_at=connected_at,
        last_seen_at=connected_at,
        os="Debian GNU/Linux 12",
        engine_root_dir="/var/lib/docker",
        driver="overlay2",
        kernel_version="6.1.0",
        mem_total=8_000_000_000,
        mem_limit=8_000_000_000,
        cpus=4,
        public_ip="203.0.113.5",
        private_ip="10.0.0.5",
        agent_version="1.5.2",
        docker_version="24.0.7",
        network_drivers=[{"name": "bridge"}, {"name": "host"}],
        volume_drivers=[{"name": "local"}],
        latest_stats=stats,
    )
    node = (await client.get("/v1/nodes/main/host", headers=admin.headers)).json()
    assert node["status"] == "online"
    assert node["connected_at"] == "2024-05-01T12:00:00Z"
    assert node["mem_total"] == 8_000_000_000
    assert node["resource_usage"] == {
        k: stats[k] for k in ("memory", "load", "filesystem", "usage", "cpu")
    }
    assert (node["network_drivers"], node["volume_drivers"]) == (
        [{"name": "bridge"}, {"name": "host"}],
        [{"name": "local"}],
    )
    assert (node["os"], node["docker_version"], node["cpus"]) == (
        "Debian GNU/Linux 12",
        "24.0.7",
        4,
    )


async def test_peer_ips_use_private_ip_within_a_region_and_public_across(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database
) -> None:
    await create_node(client, admin.headers, name="a", labels=["region=eu"])
    await create_node(client, admin.headers, name="b", labels=["region=eu"])
    await create_node(client, admin.headers, name="c", labels=["region=us"])
    await create_node(client, admin.headers, name="d")  # region "default", no IPs yet
    await create_node(client, admin.headers, name="e")
    await set_node(db, "a", private_ip="10.0.0.1", public_ip="198.51.100.1")
    await set_node(db, "b", private_ip="10.0.0.2", public_ip="198.51.100.2")
    await set_node(db, "c", private_ip="10.1.0.3", public_ip="198.51.100.3")
    await set_node(db, "e", private_ip="10.2.0.5", public_ip="198.51.100.5")
    listed = (await client.get("/v1/grids/main/nodes", headers=admin.headers)).json()["nodes"]
    peers = {n["name"]: n["peer_ips"] for n in listed}
    assert peers == {
        "a": ["10.0.0.2", "198.51.100.3", "198.51.100.5"],
        "b": ["10.0.0.1", "198.51.100.3", "198.51.100.5"],
        "c": ["198.51.100.1", "198.51.100.2", "198.51.100.5"],
        "d": ["198.51.100.1", "198.51.100.2", "198.51.100.3", "10.2.0.5"],
        "e": ["198.51.100.1", "198.51.100.2", "198.51.100.3"],
    }
    one = (await client.get("/v1/nodes/main/a", headers=admin.headers)).json()
    assert one["peer_ips"] == peers["a"]


async def test_update_replaces_labels_and_sets_availability(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database
) -> None:
    await create_node(client, admin.headers, name="host", labels=["old=1"])
    await set_node(db, "host", node_id="AAAA:BBBB", connected=True, updated=True)
    response = await client.put(
        "/v1/nodes/main/host",
        json={"labels": ["region=eu", "az=b"], "availability": "drain"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == NODE_KEYS
    assert (body["labels"], body["availability"], body["status"]) == (
        ["region=eu", "az=b"],
        "drain",
        "drain",
    )
    # Omitted fields stay as they are.
    again = await client.put("/v1/nodes/main/host", json={}, headers=admin.headers)
    assert (again.json()["labels"], again.json()["availability"]) == (
        ["region=eu", "az=b"],
        "drain",
    )
    back = await client.put(
        "/v1/nodes/main/AAAA:BBBB", json={"availability": "active"}, headers=admin.headers
    )
    assert (back.json()["availability"], back.json()["status"]) == ("active", "online")
    entries = [
        e
        for e in await _audits(db)
        if (e.resource_type, e.event_name, e.resource_name) == ("node", "update", "main/host")
    ]
    assert len(entries) == 3
    await assert_no_unaudited_requests(db)
    assert "node:drain" in await _event_types(db)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"availability": "maintenance"}, {"availability": "Availability isn't an option"}),
        ({"availability": 1}, {"availability": "Availability isn't an option"}),
        ({"labels": "x"}, {"labels": "Labels isn't an array"}),
        ({"labels": ["ok", None]}, {"labels": [None, "Labels[1] isn't a string"]}),
    ],
)
async def test_update_validation_writes_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    body: dict[str, Any],
    error: dict[str, Any],
) -> None:
    await create_node(client, admin.headers, name="host", labels=["keep=1"])
    response = await client.put("/v1/nodes/main/host", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert response.json()["error"].keys() == error.keys()
    if body.get("availability") == "maintenance":
        assert response.json() == {"error": error}
    [row] = await node_rows(db)
    assert (row.labels, row.availability) == (["keep=1"], "active")


async def test_status_follows_the_connection_state(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database
) -> None:
    await create_node(client, admin.headers, name="host")

    async def status() -> str:
        response = await client.get("/v1/nodes/main/host", headers=admin.headers)
        return str(response.json()["status"])

    assert await status() == "created"
    await set_node(db, "host", node_id="AAAA:BBBB")
    assert await status() == "offline"
    await set_node(db, "host", connected=True)
    assert await status() == "connecting"
    await set_node(db, "host", updated=True)
    assert await status() == "online"
    await set_node(db, "host", availability="drain")
    assert await status() == "drain"
    await set_node(db, "host", connected=False)
    assert await status() == "offline"


async def test_delete_removes_the_node_and_its_stats_after_auditing(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = await create_node(client, admin.headers, name="host")
    async with db.session() as session:
        row = (await session.scalars(select(Node))).one()
        session.add(NodeStat(node_id=row.id, grid_id=row.grid_id))
        await session.commit()
    rechecks = await _record_rechecks(monkeypatch, db)
    response = await client.delete("/v1/nodes/main/host", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    assert await node_rows(db) == []
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(NodeStat)) == 0
    entry = await assert_audited(db, "node", "remove node", resource_name="main/host")
    assert entry.grid_name == "main"
    assert "node:remove" in await _event_types(db)
    # The socket holder is asked to re-check only once the removal is committed.
    assert rechecks == [("host", False)]
    gone = await client.get(f"/v1/nodes/main/{node['name']}", headers=admin.headers)
    assert gone.status_code == 404


async def test_token_reset_generates_or_takes_a_token(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_node(client, admin.headers, name="host", token="first-node-token-0001")
    await set_node(db, "host", node_id="AAAA:BBBB", connected=True, updated=True)
    rechecks = await _record_rechecks(monkeypatch, db)

    generated = await client.put("/v1/nodes/main/host/token", json={}, headers=admin.headers)
    assert generated.status_code == 200
    token = generated.json()["token"]
    assert generated.json() == {"id": "main/host", "token": token} and len(token) == 88
    [row] = await node_rows(db)
    assert (row.token_hash, row.connected) == (digest(token), True)
    assert rechecks == []

    given = await client.put(
        "/v1/nodes/main/host/token",
        json={"token": "second-node-token-0002", "reset_connection": True},
        headers=admin.headers,
    )
    assert given.json() == {"id": "main/host", "token": "second-node-token-0002"}
    [row] = await node_rows(db)
    assert (row.token_hash, row.connected) == (digest("second-node-token-0002"), False)
    assert rechecks == [("host", True)]
    shown = await client.get("/v1/nodes/main/host/token", headers=admin.headers)
    assert shown.json()["token"] == "second-node-token-0002"
    # Setting the node's own current token again is no conflict; null means generate.
    same = await client.put(
        "/v1/nodes/main/host/token",
        json={"token": "second-node-token-0002"},
        headers=admin.headers,
    )
    assert same.status_code == 200
    null = await client.put(
        "/v1/nodes/main/host/token", json={"token": None}, headers=admin.headers
    )
    assert null.status_code == 200 and null.json()["token"] != "second-node-token-0002"

    entries = [e for e in await _audits(db) if e.event_name == "reset token"]
    assert len(entries) == 4
    assert all("node-token" not in (e.request_body or "") for e in entries)
    await assert_no_unaudited_requests(db)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"token": ""}, {"token": "Token can't be blank"}),
        ({"token": "too-short"}, {"token": "Token is too short"}),
        ({"token": "y" * 257}, {"token": "Token is too long"}),
        ({"token": 5}, {"token": "Token isn't a string"}),
        ({"token": "other-node-token-000001"}, {"token": "Node with token already exists"}),
        ({"reset_connection": "yes"}, {"reset_connection": "Reset connection isn't a boolean"}),
    ],
)
async def test_token_reset_validation_writes_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    body: dict[str, Any],
    error: dict[str, Any],
) -> None:
    await create_node(client, admin.headers, name="host", token="host-node-token-000001")
    await create_node(client, admin.headers, name="other", token="other-node-token-000001")
    response = await client.put("/v1/nodes/main/host/token", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": error})
    rows = {row.name: row.token_hash for row in await node_rows(db)}
    assert rows["host"] == digest("host-node-token-000001")


async def test_token_clear_leaves_the_node_without_a_token(
    client: httpx.AsyncClient,
    admin: Any,
    grid: Any,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_node(client, admin.headers, name="host")
    await set_node(db, "host", node_id="AAAA:BBBB", connected=True, updated=True)
    rechecks = await _record_rechecks(monkeypatch, db)
    cleared = await client.request(
        "DELETE",
        "/v1/nodes/main/host/token",
        json={"reset_connection": True},
        headers=admin.headers,
    )
    assert (cleared.status_code, cleared.json()) == (200, {})
    [row] = await node_rows(db)
    assert (row.token_hash, row.token_encrypted, row.connected) == (None, None, False)
    assert rechecks == [("host", True)]
    missing = await client.get("/v1/nodes/main/host/token", headers=admin.headers)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "Host node does not have a node token"},
    )
    node = (await client.get("/v1/nodes/main/host", headers=admin.headers)).json()
    assert node["has_token"] is False
    await assert_audited(db, "node", "clear token", resource_name="main/host")
    # Without a body the connection stays.
    await set_node(db, "host", connected=True)
    again = await client.delete("/v1/nodes/main/host/token", headers=admin.headers)
    assert again.status_code == 200
    assert (await node_rows(db))[0].connected is True


@dataclass
class FakeSocket:
    """Stands in for an agent socket held by this API process; records re-check requests."""

    node_pk: str
    loop: asyncio.AbstractEventLoop
    rechecks: list[bool] = field(default_factory=list)
    db: Database | None = None

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:
        raise AssertionError("no RPC expected")

    async def notify(self, method: str, params: list[Any]) -> None:
        raise AssertionError("no notification expected")

    async def recheck(self) -> None:
        assert self.db is not None
        async with self.db.session() as session:
            row = await session.get(Node, self.node_pk)
        self.rechecks.append(row is not None and row.connected)


async def test_reset_and_delete_make_the_socket_holder_recheck(
    client: httpx.AsyncClient, admin: Any, grid: Any, db: Database, runtime: Runtime
) -> None:
    await create_node(client, admin.headers, name="host")
    await set_node(db, "host", node_id="AAAA:BBBB", connected=True, updated=True)
    [row] = await node_rows(db)
    socket = FakeSocket(node_pk=row.id, loop=asyncio.get_running_loop(), db=db)
    runtime.node_rpc.attach(socket)
    try:
        await client.put("/v1/nodes/main/host/token", json={}, headers=admin.headers)
        assert socket.rechecks == []  # no reset_connection: the agent stays
        await client.put(
            "/v1/nodes/main/host/token", json={"reset_connection": True}, headers=admin.headers
        )
        assert socket.rechecks == [False]  # it re-checks and finds itself disconnected → 4031
        await client.delete("/v1/nodes/main/host", headers=admin.headers)
        assert socket.rechecks == [False, False]  # the node is gone → 4040
    finally:
        runtime.node_rpc.detach(socket)


def test_node_status_and_overlay_ip_rules() -> None:
    node = Node(name="n", node_number=3, labels=[], availability="active")
    node.connected, node.updated = False, False
    assert node_status.node_status(node) == "created"
    assert node_status.overlay_ip("10.81.0.0/16", 3) == "10.81.0.3"
    assert node_status.overlay_ip("10.81.0.0/16", 254) == "10.81.0.254"
    assert node_status.overlay_ip("not-a-subnet", 3) is None
    assert node_status.region(["az=a", "region=eu-west-1"]) == "eu-west-1"
    assert node_status.region(["regional=x"]) == "default"


async def _record_rechecks(monkeypatch: pytest.MonkeyPatch, db: Database) -> list[tuple[str, bool]]:
    """Replace request_recheck by a recorder of (node name, committed row still present)."""
    calls: list[tuple[str, bool]] = []

    async def recorder(runtime: Any, node: Node) -> None:
        # What the socket holder would see when it re-checks: the committed state.
        async with db.session() as session:
            row = await session.get(Node, node.id)
        calls.append((node.name, row is not None and not row.connected))

    monkeypatch.setattr(core_nodes, "request_recheck", recorder)
    return calls


async def _audits(db: Database) -> list[AuditLog]:
    async with db.session() as session:
        return list(await session.scalars(select(AuditLog).order_by(AuditLog.id)))


async def _event_types(db: Database) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(select(EventLog.type).order_by(EventLog.id)))
