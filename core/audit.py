"""Audit entries for mutating requests: who did what, to which resource, from where."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from models import AuditLog, Grid

DEFAULT_LIMIT = 500
MAX_LIMIT = 3000
_LEADING_INT = re.compile(r"\s*[+-]?\d+")

# Marks a session that holds an audit entry, so the API can audit what a handler forgot.
_AUDITED = "kontena.audited"


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
    session.info[_AUDITED] = True
    return entry


def was_audited(session: AsyncSession) -> bool:
    """True once :func:`record_audit` added an entry to ``session``."""
    return bool(session.info.get(_AUDITED))


def audit_limit(raw: str | None) -> int:
    """Kontena's ``limit``: honoured within 1..3000 (read like Ruby's ``to_i``), else 500."""
    match = _LEADING_INT.match(raw or "")
    limit = int(match.group()) if match else 0
    return limit if 1 <= limit <= MAX_LIMIT else DEFAULT_LIMIT


async def list_audit_logs(
    session: AsyncSession, *, limit: int, grid: Grid | None = None
) -> Sequence[AuditLog]:
    """The newest ``limit`` entries (of ``grid`` when given), returned oldest first."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if grid is not None:
        query = query.where(AuditLog.grid_id == grid.id)
    rows = (await session.execute(query)).scalars().all()
    return list(reversed(rows))
