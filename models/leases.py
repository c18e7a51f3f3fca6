"""The scheduler's leader lease and the record of periodic ticks already fired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Lease(Base):
    """A named lease; ``epoch`` grows on every change of holder and fences stale leaders."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(default=1)
    expires_at: Mapped[datetime] = mapped_column()


class TickRun(Base):
    """A periodic job for one time slot; the primary key makes a second firing a no-op."""

    __tablename__ = "tick_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    epoch: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
