"""Users, roles, role assignments and grid memberships."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, ObjectIdMixin, TimestampMixin

if TYPE_CHECKING:
    from models.grids import Grid

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

grid_users = Table(
    "grid_users",
    Base.metadata,
    Column("grid_id", ForeignKey("grids.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)

LOCAL_ADMIN_EMAIL = "admin"


class Role(ObjectIdMixin, Base):
    """A named role: ``master_admin``, ``grid_admin`` or ``user_admin``."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class User(ObjectIdMixin, TimestampMixin, Base):
    """A person (or the local bootstrap ``admin``) who holds tokens."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    invite_code: Mapped[str | None] = mapped_column(String(64), unique=True)

    roles: Mapped[list[Role]] = relationship(secondary=user_roles, lazy="selectin")
    grids: Mapped[list[Grid]] = relationship(
        secondary=grid_users, back_populates="users", lazy="raise"
    )

    @property
    def role_names(self) -> set[str]:
        """Names of the roles this user holds."""
        return {r.name for r in self.roles}
