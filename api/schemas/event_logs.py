"""Wire shape of event log entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from core.logs import event_relationships
from models import EventLog


class Relationship(msgspec.Struct):
    """What an event concerns: a Kontena path id and its type."""

    id: str
    type: str


class EventLogEntry(msgspec.Struct):
    """One event (§2.13) plus ``id``, the cursor clients pass back as ``from``."""

    id: str
    created_at: datetime
    severity: int
    type: str
    message: str
    meta: dict[str, Any]
    relationships: list[Relationship]


class EventLogList(msgspec.Struct):
    """``GET …/event_logs``."""

    logs: list[EventLogEntry]


def event_log_view(grid_name: str, entry: EventLog) -> EventLogEntry:
    """Render one event of the grid named ``grid_name``."""
    return EventLogEntry(
        id=str(entry.id),
        created_at=entry.created_at,
        severity=entry.severity,
        type=entry.type,
        message=entry.message,
        meta=entry.meta or {},
        relationships=[Relationship(**r) for r in event_relationships(grid_name, entry)],
    )
