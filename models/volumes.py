"""Grid volumes and the Docker volumes (instances) they became on nodes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin


class Volume(ObjectIdMixin, TimestampMixin, Base):
    """A named volume of a grid; ``scope`` decides how many Docker volumes it becomes."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("grid_id", "name", name="uq_volumes_grid_id_name"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(16))  # instance | stack | grid
    driver: Mapped[str] = mapped_column(String(255))
    driver_opts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class VolumeInstance(ObjectIdMixin, TimestampMixin, Base):
    """A Docker volume of a grid volume on one node (``stack.svc.vol-1``, ``stack.vol``...)."""

    __tablename__ = "volume_instances"
    __table_args__ = (UniqueConstraint("node_id", "name", name="uq_volume_instances_node_id_name"),)

    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
