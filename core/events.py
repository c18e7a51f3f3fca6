"""Event log entries: what the platform did, shown by ``…/event_logs``."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import EventLog


class Severity(enum.IntEnum):
    """Kontena's event severities."""

    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3


def record_event(
    session: AsyncSession,
    grid_id: str,
    type_: str,
    message: str,
    *,
    severity: Severity = Severity.INFO,
    stack: str | None = None,
    service: str | None = None,
    node: str | None = None,
    volume: str | None = None,
    meta: dict[str, Any] | None = None,
) -> EventLog:
    """Add an event to the session (committed with the change it describes)."""
    entry = EventLog(
        grid_id=grid_id,
        type=type_,
        message=message,
        severity=int(severity),
        stack=stack,
        service=service,
        node=node,
        volume=volume,
        meta=meta or {},
    )
    session.add(entry)
    return entry
