"""Services, their instances (desired placement) and deploy objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin, utcnow
from models.work import WorkRowMixin

NULL_STACK = "null"


class Service(ObjectIdMixin, TimestampMixin, Base):
    """A service; the columns placement and deploys query, the rest of its spec as JSON."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("grid_id", "stack", "name", name="uq_services_path"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    stack: Mapped[str] = mapped_column(String(64), default=NULL_STACK)
    name: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default="initialized")
    instances: Mapped[int] = mapped_column(default=1)
    stateful: Mapped[bool] = mapped_column(default=False)
    strategy: Mapped[str] = mapped_column(String(16), default="ha")
    revision: Mapped[int] = mapped_column(default=1)
    stack_revision: Mapped[int | None] = mapped_column()
    # Every other attribute of the Service object (cmd, env, ports, links, hooks…), validated
    # by core.services.ServiceSpec before it is stored.
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deploy_requested_at: Mapped[datetime | None] = mapped_column()
    deployed_at: Mapped[datetime | None] = mapped_column()
    # The revision the last started deploy rolled out; rescheduling redeploys when it lags.
    deployed_revision: Mapped[int | None] = mapped_column()


class ServiceInstance(ObjectIdMixin, TimestampMixin, Base):
    """Instance ``n`` of a service: where it should run (master) and what the agent reported."""

    __tablename__ = "service_instances"
    __table_args__ = (
        UniqueConstraint("service_id", "instance_number", name="uq_service_instances_number"),
    )

    service_id: Mapped[str] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    instance_number: Mapped[int] = mapped_column()
    node_id: Mapped[str | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="SET NULL"), index=True
    )
    desired_state: Mapped[str] = mapped_column(String(16), default="initialized")
    deploy_rev: Mapped[str | None] = mapped_column(String(64))
    # Reported by the agent: the deploy_rev it last applied, the container state, an error.
    rev: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="initialized")
    error: Mapped[str | None] = mapped_column(String(2048))
    # The agent's last health probe of the container at ``deploy_rev`` (healthy/unhealthy; None:
    # no health check, not probed yet, or not running) and why it failed.
    health_status: Mapped[str | None] = mapped_column(String(16))
    health_status_at: Mapped[datetime | None] = mapped_column()
    health_error: Mapped[str | None] = mapped_column(String(512))


class ServiceDeploy(ObjectIdMixin, WorkRowMixin, Base):
    """A deploy object clients poll; also the work row its job acts on."""

    __tablename__ = "service_deploys"

    service_id: Mapped[str] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    force: Mapped[bool] = mapped_column(default=False)
    # [{instance_number, node, state, error}] as the deploy progresses.
    instance_deploys: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
