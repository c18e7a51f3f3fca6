"""Nodes (hosts running the agent) and the stats they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, ObjectIdMixin, TimestampMixin, utcnow


class Node(ObjectIdMixin, TimestampMixin, Base):
    """A host in a grid; ``node_id`` is the agent's id (the Docker engine id by default)."""

    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("grid_id", "name", name="uq_nodes_grid_id_name"),
        UniqueConstraint("grid_id", "node_number", name="uq_nodes_grid_id_node_number"),
    )

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    node_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    node_number: Mapped[int] = mapped_column()
    # Node tokens: hash for the agent's join, vault copy because the API shows it again.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_encrypted: Mapped[str | None] = mapped_column(String(1024))
    labels: Mapped[list[str]] = mapped_column(default=list)
    availability: Mapped[str] = mapped_column(String(16), default="active")
    # What the agent reports in /nodes/update.
    os: Mapped[str | None] = mapped_column(String(255))
    engine_root_dir: Mapped[str | None] = mapped_column(String(1024))
    driver: Mapped[str | None] = mapped_column(String(64))
    kernel_version: Mapped[str | None] = mapped_column(String(255))
    # Bytes: a 32-bit integer overflows at 2 GiB.
    mem_total: Mapped[int | None] = mapped_column(BigInteger)
    mem_limit: Mapped[int | None] = mapped_column(BigInteger)
    cpus: Mapped[int | None] = mapped_column()
    public_ip: Mapped[str | None] = mapped_column(String(64))
    private_ip: Mapped[str | None] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    docker_version: Mapped[str | None] = mapped_column(String(64))
    network_drivers: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    volume_drivers: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    # Connection state: `updated` means /nodes/update arrived on the current connection.
    connected: Mapped[bool] = mapped_column(default=False)
    updated: Mapped[bool] = mapped_column(default=False)
    connected_at: Mapped[datetime | None] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    disconnected_at: Mapped[datetime | None] = mapped_column()
    # Which API process holds the socket (RPC routing) and how the last socket ended.
    connection_holder: Mapped[str | None] = mapped_column(String(128))
    websocket_connection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latest_stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class NodeStat(Base):
    """One stats report of a node (every 60 s); read back as per-minute metrics."""

    __tablename__ = "node_stats"
    __table_args__ = (Index("ix_node_stats_node_created", "node_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    memory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    load: Mapped[dict[str, Any]] = mapped_column(default=dict)
    filesystem: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    cpu: Mapped[dict[str, Any]] = mapped_column(default=dict)
    network: Mapped[dict[str, Any]] = mapped_column(default=dict)
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
