"""Event logs (what the platform did) and audit logs (who asked for it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, utcnow


class EventLog(Base):
    """An event in a grid; ids grow monotonically so they work as ``from`` cursors."""

    __tablename__ = "event_logs"
    __table_args__ = (Index("ix_event_logs_grid_id_id", "grid_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    stack: Mapped[str | None] = mapped_column(String(255))
    service: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(255))
    volume: Mapped[str | None] = mapped_column(String(255))
    severity: Mapped[int] = mapped_column(default=1)
    type: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AuditLog(Base):
    """One mutating request: who, from where, on what, with which outcome."""

    __tablename__ = "audit_logs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    grid_id: Mapped[str | None] = mapped_column(
        ForeignKey("grids.id", ondelete="SET NULL"), index=True
    )
    grid_name: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(24))
    user_email: Mapped[str | None] = mapped_column(String(255))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    resource_name: Mapped[str | None] = mapped_column(String(255))
    event_name: Mapped[str] = mapped_column(String(64))
    event_status: Mapped[str] = mapped_column(String(32), default="success")
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
