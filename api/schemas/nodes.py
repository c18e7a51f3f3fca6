"""Wire shapes of nodes: request bodies (defined with their rules in core), node JSON, stats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from api.schemas.grids import LogsView, StatsView
from core.node_metrics import ContainerStatItem, Metrics
from core.node_status import initial_member, node_status, overlay_ip, peer_ips
from core.nodes import NodeCreate, NodeTokenClear, NodeTokenReset, NodeUpdate, Peer, node_path
from models import Grid
from models import Node as NodeRow

__all__ = [
    "Metrics",
    "Node",
    "NodeCreate",
    "NodeGrid",
    "NodeList",
    "NodeToken",
    "NodeTokenClear",
    "NodeTokenReset",
    "NodeUpdate",
    "StatsList",
    "node_view",
]

# What resource_usage shows of the latest stats report.
RESOURCE_USAGE_KEYS = ("memory", "load", "filesystem", "usage", "cpu")


class NodeGrid(msgspec.Struct):
    """The grid as embedded in a node (join token included, as Kontena showed members)."""

    id: str
    name: str
    initial_size: int
    token: str
    stats: StatsView
    trusted_subnets: list[str]
    subnet: str
    supernet: str
    logs: LogsView | msgspec.UnsetType = msgspec.UNSET


class Node(msgspec.Struct):
    """The node JSON (§2.13); never the token itself, only ``has_token``."""

    id: str
    node_id: str | None
    connected: bool
    updated: bool
    availability: str
    created_at: datetime
    updated_at: datetime
    connected_at: datetime | None
    last_seen_at: datetime | None
    disconnected_at: datetime | None
    status: str
    has_token: bool
    name: str
    os: str | None
    engine_root_dir: str | None
    driver: str | None
    network_drivers: list[dict[str, Any]]
    volume_drivers: list[dict[str, Any]]
    kernel_version: str | None
    labels: list[str]
    mem_total: int | None
    mem_limit: int | None
    cpus: int | None
    public_ip: str | None
    private_ip: str | None
    overlay_ip: str | None
    agent_version: str | None
    docker_version: str | None
    peer_ips: list[str]
    node_number: int
    initial_member: bool
    grid: NodeGrid
    resource_usage: dict[str, Any]


class NodeList(msgspec.Struct):
    """``GET /v1/grids/:grid/nodes``."""

    nodes: list[Node]


class NodeToken(msgspec.Struct):
    """``GET/PUT /v1/nodes/:grid/:node/token``."""

    id: str
    token: str


class StatsList(msgspec.Struct):
    """``GET …/stats``: containers with their latest stats."""

    stats: list[ContainerStatItem]


def node_grid_view(grid: Grid, token: str) -> NodeGrid:
    """The grid part of a node's JSON."""
    logs: LogsView | msgspec.UnsetType = msgspec.UNSET
    if grid.logs:
        logs = LogsView(forwarder=grid.logs["forwarder"], opts=dict(grid.logs.get("opts") or {}))
    return NodeGrid(
        id=grid.name,
        name=grid.name,
        initial_size=grid.initial_size,
        token=token,
        stats=StatsView(statsd=(grid.stats or {}).get("statsd")),
        trusted_subnets=list(grid.trusted_subnets),
        subnet=grid.subnet,
        supernet=grid.supernet,
        logs=logs,
    )


def node_view(node: NodeRow, grid: Grid, grid_view: NodeGrid, peers: Sequence[Peer]) -> Node:
    """Render a node row; ``peers`` are the grid's nodes (for ``peer_ips``)."""
    stats = node.latest_stats or {}
    return Node(
        id=node_path(grid.name, node.name),
        node_id=node.node_id,
        connected=node.connected,
        updated=node.updated,
        availability=node.availability,
        created_at=node.created_at,
        updated_at=node.updated_at,
        connected_at=node.connected_at,
        last_seen_at=node.last_seen_at,
        disconnected_at=node.disconnected_at,
        status=node_status(node),
        has_token=node.token_hash is not None,
        name=node.name,
        os=node.os,
        engine_root_dir=node.engine_root_dir,
        driver=node.driver,
        network_drivers=list(node.network_drivers or []),
        volume_drivers=list(node.volume_drivers or []),
        kernel_version=node.kernel_version,
        labels=list(node.labels or []),
        mem_total=node.mem_total,
        mem_limit=node.mem_limit,
        cpus=node.cpus,
        public_ip=node.public_ip,
        private_ip=node.private_ip,
        overlay_ip=overlay_ip(grid.subnet, node.node_number),
        agent_version=node.agent_version,
        docker_version=node.docker_version,
        peer_ips=peer_ips(node, peers),
        node_number=node.node_number,
        initial_member=initial_member(node, grid),
        grid=grid_view,
        resource_usage={k: stats[k] for k in RESOURCE_USAGE_KEYS if k in stats},
    )
