"""Audit entries for mutating requests: who did what, to which resource, from where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from models import AuditLog, Grid


@dataclass(frozen=True)
class RequestInfo:
    """The parts of an HTTP request an audit entry keeps."""

    source_ip: str | None = None
    user_agent: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    body: str | None = None


def record_audit(
    session: AsyncSession,
    principal: Principal | None,
    request: RequestInfo,
    *,
    resource_type: str,
    event_name: str,
    resource_id: str | None = None,
    resource_name: str | None = None,
    grid: Grid | None = None,
    secret: bool = False,
) -> AuditLog:
    """Add an audit entry to the session; ``secret`` routes never keep the request body."""
    entry = AuditLog(
        grid_id=grid.id if grid else None,
        grid_name=grid.name if grid else None,
        user_id=principal.user.id if principal else None,
        user_email=principal.user.email if principal else None,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_name=resource_name,
        event_name=event_name,
        source_ip=request.source_ip,
        user_agent=request.user_agent,
        request_parameters=request.parameters,
        request_body=None if secret else request.body,
    )
    session.add(entry)
    return entry
