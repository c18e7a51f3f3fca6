"""The master's key/value configuration store."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin


class ConfigEntry(TimestampMixin, Base):
    """One configuration key; values of ``*_secret`` keys are vault ciphertext."""

    __tablename__ = "configuration"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(default=False)
