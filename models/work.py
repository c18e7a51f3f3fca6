"""The shared shape of work rows: deploys, authorizations, certificate requests…"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import utcnow


class WorkState(enum.StrEnum):
    """Kontena's deploy states, used by every kind of queued work."""

    CREATED = "created"
    ONGOING = "ongoing"
    SUCCESS = "success"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        """True once the work has ended, either way."""
        return self in (WorkState.SUCCESS, WorkState.ERROR)


class WorkRowMixin:
    """Columns every work row carries; see core/work.py for the state transitions."""

    state: Mapped[str] = mapped_column(String(16), default=WorkState.CREATED, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    # Delivery bookkeeping: when the job was last sent, and how often a worker claimed it.
    sent_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column()
