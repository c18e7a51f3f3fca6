"""Grids: the top-level cluster object every other resource belongs to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, ObjectIdMixin, TimestampMixin
from models.users import grid_users

if TYPE_CHECKING:
    from models.users import User

DEFAULT_SUBNET = "10.81.0.0/16"
DEFAULT_SUPERNET = "10.80.0.0/12"


class Grid(ObjectIdMixin, TimestampMixin, Base):
    """A grid; its public id is its name, its join token is kept hashed and vault-encrypted."""

    __tablename__ = "grids"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_encrypted: Mapped[str] = mapped_column(String(512))
    initial_size: Mapped[int] = mapped_column(default=1)
    subnet: Mapped[str] = mapped_column(String(64), default=DEFAULT_SUBNET)
    supernet: Mapped[str] = mapped_column(String(64), default=DEFAULT_SUPERNET)
    default_affinity: Mapped[list[str]] = mapped_column(default=list)
    trusted_subnets: Mapped[list[str]] = mapped_column(default=list)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    logs: Mapped[dict[str, Any] | None] = mapped_column()

    users: Mapped[list[User]] = relationship(
        secondary=grid_users, back_populates="grids", lazy="raise"
    )
