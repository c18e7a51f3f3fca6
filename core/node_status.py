"""Derived node attributes: status, overlay IP, peer IPs and the ``/agent/node_info`` hash."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from models import Grid, Node

# Kontena's node numbers: one per overlay address in a /24-sized block.
NODE_NUMBER_MAX = 254


DEFAULT_REGION = "default"


class PeerFields(Protocol):
    """What :func:`peer_ips` reads of a node (a Node row or a lighter stand-in)."""

    @property
    def id(self) -> str: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def private_ip(self) -> str | None: ...
    @property
    def public_ip(self) -> str | None: ...


class NodeFields(Protocol):
    """What :func:`node_status` reads (a Node row or anything shaped like it)."""

    node_id: str | None
    connected: bool
    updated: bool
    availability: str


def node_status(node: NodeFields) -> str:
    """``created`` · ``offline`` · ``connecting`` · ``drain`` · ``online`` (reference §4.1)."""
    if node.node_id is None:
        return "created"
    if not node.connected:
        return "offline"
    if not node.updated:
        return "connecting"
    if node.availability == "drain":
        return "drain"
    return "online"


def region(labels: Iterable[str]) -> str:
    """The ``region=`` label, ``default`` without one."""
    for label in labels:
        key, sep, value = label.partition("=")
        if sep and key == "region":
            return value
    return DEFAULT_REGION


def overlay_ip(subnet: str, node_number: int) -> str | None:
    """The grid subnet's address OR the node number, as Kontena (10.81.0.0/16 + 3 → 10.81.0.3)."""
    try:
        network = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return None
    return str(ipaddress.ip_address(int(network.network_address) | node_number))


def peer_ips(node: PeerFields, peers: Iterable[PeerFields]) -> list[str]:
    """Other nodes' private IP within the node's region, their public IP across regions."""
    own = region(node.labels or [])
    ips = []
    for peer in peers:
        if peer.id == node.id:
            continue
        ip = peer.private_ip if region(peer.labels or []) == own else peer.public_ip
        if ip:
            ips.append(ip)
    return ips


def initial_member(node: Node, grid: Grid) -> bool:
    """Whether the node is one of the grid's first ``initial_size`` (etcd) members."""
    return node.node_number <= grid.initial_size


def lowest_free_number(taken: Iterable[int]) -> int | None:
    """The lowest node number 1..254 not in ``taken``; None when the grid is full."""
    used = set(taken)
    return next((n for n in range(1, NODE_NUMBER_MAX + 1) if n not in used), None)


def node_info(node: Node, grid: Grid, grid_nodes: Iterable[PeerFields]) -> dict[str, Any]:
    """The hash ``/agent/node_info`` carries (reference §7.3)."""
    return {
        "id": node.node_id,
        "created_at": node.created_at.isoformat() if node.created_at else None,
        "updated_at": node.updated_at.isoformat() if node.updated_at else None,
        "name": node.name,
        "labels": list(node.labels or []),
        "overlay_ip": overlay_ip(grid.subnet, node.node_number),
        "peer_ips": peer_ips(node, grid_nodes),
        "node_number": node.node_number,
        "initial_member": initial_member(node, grid),
        "grid": {
            "id": grid.name,
            "name": grid.name,
            "initial_size": grid.initial_size,
            "trusted_subnets": list(grid.trusted_subnets or []),
            "subnet": grid.subnet,
            "supernet": grid.supernet,
            "stats": grid.stats or {},
            "logs": grid.logs,
        },
    }
