"""Stacks, their revisions (history), stack deploys and stack removals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin, utcnow
from models.work import WorkRowMixin


class Stack(ObjectIdMixin, TimestampMixin, Base):
    """A named group of services in a grid; what it contains lives in its revisions."""

    __tablename__ = "stacks"
    __table_args__ = (UniqueConstraint("grid_id", "name", name="uq_stacks_grid_name"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    parent_name: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(default=list)
    # Set by DELETE: the stack is hidden while the removal job takes its services down.
    removing: Mapped[bool] = mapped_column(default=False)


class StackRevision(ObjectIdMixin, Base):
    """One version of a stack as a client sent it; a PUT that changes something adds one."""

    __tablename__ = "stack_revisions"
    __table_args__ = (
        UniqueConstraint("stack_id", "revision", name="uq_stack_revisions_stack_revision"),
    )

    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column()
    stack_name: Mapped[str] = mapped_column(String(255))  # the "stack" attribute, e.g. user/redis
    version: Mapped[str] = mapped_column(String(64))
    # "registry" itself is reserved by SQLAlchemy's declarative base.
    registry_url: Mapped[str | None] = mapped_column("registry", String(1024))
    source: Mapped[str] = mapped_column(Text, default="")
    expose: Mapped[str | None] = mapped_column(String(64))
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Service hashes as sent, in the order sent; volumes as [{name, external}].
    services: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    volumes: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StackDeploy(ObjectIdMixin, WorkRowMixin, Base):
    """A stack deploy clients poll; also the work row of the ``stacks.deploy`` job."""

    __tablename__ = "stack_deploys"

    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"), index=True)
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column()
    # [{service, deploy_id}] in the order the service deploys were created (the progress).
    service_deploys: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StackRemoval(ObjectIdMixin, WorkRowMixin, Base):
    """The work row of a stack delete; it outlives the stack row it removes."""

    __tablename__ = "stack_removals"

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    stack_id: Mapped[str] = mapped_column(String(24), index=True)
    stack_name: Mapped[str] = mapped_column(String(64))
