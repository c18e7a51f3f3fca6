"""The audit log entry as Kontena's ``audit_logs/_audit_log`` view renders it."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from models import AuditLog


class UserIdentity(msgspec.Struct):
    """Who made the request (kept on the entry, so it survives the user's removal)."""

    id: str
    email: str | None


class AuditLogEntry(msgspec.Struct):
    """One audited request; empty strings where the original rendered ``nil.to_s``."""

    time: str
    grid: str | None
    grid_id: str
    service: str
    resource_type: str
    resource_name: str | None
    resource_id: str
    event_name: str
    event_status: str
    source_ip: str | None
    user_agent: str | None
    user_identity: UserIdentity


class AuditLogList(msgspec.Struct):
    """``{"logs": [...]}``."""

    logs: list[AuditLogEntry]


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as Rails renders times (``…T12:00:00.000Z``)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def render_audit_log(entry: AuditLog) -> AuditLogEntry:
    """The wire shape of one stored entry."""
    return AuditLogEntry(
        time=timestamp(entry.created_at),
        grid=entry.grid_name,
        grid_id=entry.grid_id or "",
        service="",
        resource_type=entry.resource_type,
        resource_name=entry.resource_name,
        resource_id=entry.resource_id or "",
        event_name=entry.event_name,
        event_status=entry.event_status,
        source_ip=entry.source_ip,
        user_agent=entry.user_agent,
        user_identity=UserIdentity(id=entry.user_id or "", email=entry.user_email),
    )
