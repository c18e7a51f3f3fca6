"""Containers the agents report (one row per Docker container) and their stats over time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, ObjectIdMixin, TimestampMixin, utcnow


class Container(ObjectIdMixin, TimestampMixin, Base):
    """A container on a node, kept up to date by ``/containers/save`` and removed when gone."""

    __tablename__ = "containers"
    __table_args__ = (
        UniqueConstraint("node_id", "container_id", name="uq_containers_node_container"),
    )

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    # Set from the io.kontena.service.id label when that service exists.
    service_id: Mapped[str | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), index=True
    )
    container_id: Mapped[str] = mapped_column(String(64))  # the Docker id
    name: Mapped[str] = mapped_column(String(255))
    image: Mapped[str | None] = mapped_column(String(512))
    instance_number: Mapped[int | None] = mapped_column()
    deploy_rev: Mapped[str | None] = mapped_column(String(64))
    service_rev: Mapped[str | None] = mapped_column(String(64))
    running: Mapped[bool] = mapped_column(default=False)
    # Docker's State object reduced to Kontena's keys (error, exit_code, pid, running...).
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # Everything else of the container JSON (cmd, env without secrets, volumes, networks...).
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latest_stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats_at: Mapped[datetime | None] = mapped_column()


class ContainerStat(Base):
    """One stats sample of a container; read back as per-minute service metrics.

    Not tied to the container row: a redeploy replaces containers, their history stays.
    """

    __tablename__ = "container_stats"
    __table_args__ = (
        Index("ix_container_stats_service_created", "service_id", "created_at"),
        Index("ix_container_stats_node_created", "node_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    service_id: Mapped[str | None] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    container_id: Mapped[str] = mapped_column(String(64))  # the Docker id
    name: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cpu: Mapped[dict[str, Any]] = mapped_column(default=dict)
    memory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    network: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
