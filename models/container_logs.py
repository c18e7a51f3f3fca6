"""Container log lines shipped by agents, and how far each container's streams were stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, utcnow


class ContainerLog(Base):
    """One stdout/stderr line; ids grow in commit order per grid so they work as cursors."""

    __tablename__ = "container_logs"
    __table_args__ = (
        Index("ix_container_logs_grid_id_id", "grid_id", "id"),
        Index("ix_container_logs_service_id_id", "service_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    # No foreign key: a removed service's lines stay until retention removes them (as Kontena).
    service_id: Mapped[str] = mapped_column(String(24))
    stack: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(255))
    container_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    instance_number: Mapped[int] = mapped_column()
    type: Mapped[str] = mapped_column(String(8))
    data: Mapped[str] = mapped_column(Text)
    # When Docker captured the line (the agent's timestamp), not when it was stored.
    created_at: Mapped[datetime] = mapped_column(index=True)


class ContainerLogCursor(Base):
    """The last stored line of one stream of one container: (Docker timestamp in ns, ordinal).

    Docker timestamps can repeat, so ``seq`` counts lines sharing one timestamp; the pair
    orders a stream totally and lets a re-sent batch be stored exactly once.
    """

    __tablename__ = "container_log_cursors"

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(8), primary_key=True)
    time_ns: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
