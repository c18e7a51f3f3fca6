"""Joining rules without a socket: headers, clock skew, numbering, races, derived fields."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from core import protocol
from core.node_join import Handshake, JoinRejected, join_node, read_handshake
from core.node_status import node_info, node_status, overlay_ip, peer_ips
from core.tokens import digest, new_grid_token
from models import Grid, Node
from models.base import utcnow
from models.db import Database


def handshake(node_id: str = "AAAA:1111", name: str = "host", **kw: Any) -> Handshake:
    """A handshake as read from good headers."""
    values: dict[str, Any] = {
        "node_id": node_id,
        "name": name,
        "version": protocol.PROTOCOL_VERSION,
        "labels": [],
        "connected_at": None,
        "grid_token": None,
        "node_token": None,
        **kw,
    }
    return Handshake(**values)


async def grid(db: Database, subnet: str = "10.81.0.0/16") -> tuple[Grid, str]:
    """A grid and its join token."""
    token = new_grid_token()
    row = Grid(name="main", token_hash=digest(token), token_encrypted="x", subnet=subnet)
    async with db.session() as session:
        session.add(row)
        await session.commit()
    return row, token


def test_headers_are_read_and_labels_split() -> None:
    hs = read_handshake(
        {
            protocol.HEADER_NODE_ID: " ABCD:EF ",
            protocol.HEADER_NODE_NAME: "web-1",
            protocol.HEADER_VERSION: "1.5.0",
            protocol.HEADER_LABELS: "region=eu, az=a,,",
            protocol.HEADER_GRID_TOKEN: "tok",
        }
    )
    assert (hs.node_id, hs.name, hs.version, hs.labels) == (
        "ABCD:EF",
        "web-1",
        "1.5.0",
        ["region=eu", "az=a"],
    )
    assert (hs.grid_token, hs.node_token, hs.connected_at) == ("tok", None, None)
    with pytest.raises(JoinRejected) as missing_id:
        read_handshake({protocol.HEADER_GRID_TOKEN: "tok"})
    assert (missing_id.value.code, missing_id.value.reason) == (4000, "Missing Kontena-Node-ID")
    with pytest.raises(JoinRejected) as missing_token:
        read_handshake({protocol.HEADER_NODE_ID: "x"})
    assert missing_token.value.code == 4004


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-5.9, True), (-6.5, False), (0.9, True), (1.5, False), (0.0, True)],
)
async def test_clock_skew_bounds(db: Database, offset: float, accepted: bool) -> None:
    _, token = await grid(db)
    now = utcnow()
    at = protocol.format_connected_at(now + timedelta(seconds=offset))
    hs = handshake(grid_token=token, connected_at=at)
    if accepted:
        assert (await join_node(db, hs, now)).node_id == "AAAA:1111"
    else:
        with pytest.raises(JoinRejected) as rejected:
            await join_node(db, hs, now)
        assert rejected.value.code == 4020


async def test_numbers_fill_gaps_and_names_get_suffixes(db: Database) -> None:
    row, token = await grid(db)
    async with db.session() as session:
        session.add(Node(grid_id=row.id, name="host", node_number=2, node_id="X2"))
        await session.commit()
    first = await join_node(db, handshake("N1", "host", grid_token=token), utcnow())
    second = await join_node(db, handshake("N3", "other", grid_token=token), utcnow())
    assert (first.name, first.node_number) == ("host-1", 1)
    assert (second.name, second.node_number) == ("other", 3)


async def test_concurrent_joins_get_distinct_numbers_and_one_node_per_id(db: Database) -> None:
    _, token = await grid(db)
    joins = [
        join_node(db, handshake(f"ID{i}", "host", grid_token=token), utcnow()) for i in range(6)
    ]
    joins += [join_node(db, handshake("ID0", "host", grid_token=token), utcnow()) for _ in range(3)]
    joined = await asyncio.gather(*joins)
    assert len({n.id for n in joined}) == 6
    async with db.session() as session:
        stored = (await session.execute(select(Node.node_number, Node.name))).all()
    assert sorted(n for n, _ in stored) == [1, 2, 3, 4, 5, 6]
    assert len({name for _, name in stored}) == 6


async def test_concurrent_node_token_binds_let_one_id_win(db: Database) -> None:
    row, _ = await grid(db)
    async with db.session() as session:
        session.add(Node(grid_id=row.id, name="host", node_number=1, token_hash=digest("t" * 20)))
        await session.commit()
    results = await asyncio.gather(
        *(join_node(db, handshake(f"ID{i}", node_token="t" * 20), utcnow()) for i in range(4)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Node)]
    losers = [r for r in results if isinstance(r, JoinRejected)]
    assert len(winners) == 1 and len(losers) == 3
    assert {r.code for r in losers} == {4003}


async def test_a_full_grid_refuses_new_nodes(db: Database) -> None:
    row, token = await grid(db)
    async with db.session() as session:
        session.add_all(
            Node(grid_id=row.id, name=f"n{i}", node_number=i, node_id=f"X{i}")
            for i in range(1, 255)
        )
        await session.commit()
    with pytest.raises(JoinRejected) as full:
        await join_node(db, handshake("NEW", grid_token=token), utcnow())
    assert full.value.code == 1013
    # A known node of a full grid still joins.
    assert (await join_node(db, handshake("X7", grid_token=token), utcnow())).name == "n7"


def test_status_is_derived_from_the_connection_state() -> None:
    def status(**kw: Any) -> str:
        values = {"node_id": "x", "connected": True, "updated": True, "availability": "active"}
        return node_status(SimpleNamespace(**{**values, **kw}))  # type: ignore[arg-type]

    assert status(node_id=None, connected=False) == "created"
    assert status(connected=False) == "offline"
    assert status(updated=False) == "connecting"
    assert status(availability="drain") == "drain"
    assert status() == "online"


def test_overlay_and_peer_addresses() -> None:
    grid_row = Grid(name="g", subnet="10.81.0.0/16", initial_size=2, trusted_subnets=[], stats={})
    me = Node(id="1", name="a", node_number=3, labels=["region=eu"], private_ip="10.0.0.1")
    same_region = Node(
        id="2",
        name="b",
        node_number=1,
        labels=["region=eu"],
        private_ip="10.0.0.2",
        public_ip="1.1.1.2",
    )
    other_region = Node(
        id="3",
        name="c",
        node_number=2,
        labels=["region=us"],
        private_ip="10.0.0.3",
        public_ip="1.1.1.3",
    )
    no_ip = Node(id="4", name="d", node_number=4, labels=[])
    assert overlay_ip(grid_row.subnet, me.node_number) == "10.81.0.3"
    assert peer_ips(me, [me, same_region, other_region, no_ip]) == ["10.0.0.2", "1.1.1.3"]
    info = node_info(me, grid_row, [me])
    assert (info["initial_member"], node_info(same_region, grid_row, [])["initial_member"]) == (
        False,
        True,
    )
