"""External Docker registries whose credentials the grid's nodes pull images with."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin


class Registry(ObjectIdMixin, TimestampMixin, Base):
    """A registry of a grid, named ``host[:port]``; the password is vault ciphertext."""

    __tablename__ = "registries"
    __table_args__ = (UniqueConstraint("grid_id", "name", name="uq_registries_grid_id_name"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(2048))
    username: Mapped[str] = mapped_column(String(255))
    # Context ``registry:<grid>/<name>``.
    password_encrypted: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(255))
