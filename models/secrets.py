"""Grid secrets: named values kept vault-encrypted, injected into service containers."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin


class GridSecret(ObjectIdMixin, TimestampMixin, Base):
    """A secret of a grid; its public id is ``grid/NAME`` and its value is vault ciphertext."""

    __tablename__ = "grid_secrets"
    __table_args__ = (UniqueConstraint("grid_id", "name", name="uq_grid_secrets_grid_id_name"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # Context ``secret:<grid>/<name>``: a ciphertext copied to another row fails to decrypt.
    value_encrypted: Mapped[str] = mapped_column(Text)
