"""The body every work actor shares: claim the row, do the step, finish it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.logging_setup import work_row
from core.work import WorkKind, claim, finish, get_kind
from models.work import WorkState
from workers import context

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Any], Awaitable[None]]


async def perform(kind: WorkKind | str, row_id: Any, handler: Handler) -> bool:
    """Claim row ``row_id`` and run ``handler(session, row)``; False when nothing was claimed.

    The row ends ``success`` unless the handler finished it itself; an exception leaves it to
    the WorkRows middleware (released for the retry, or ``error`` when retries are exhausted).
    The handler may commit progress as it goes; resuming from that progress is its job.
    """
    kind = get_kind(kind) if isinstance(kind, str) else kind
    with work_row(kind.name, row_id):
        return await _perform(kind, row_id, handler)


async def _perform(kind: WorkKind, row_id: Any, handler: Handler) -> bool:
    async with context.database().session() as session:
        row = await claim(
            session,
            kind.model,
            row_id,
            kind.lease_seconds,
            max_deliveries=context.settings().max_deliveries,
        )
        await session.commit()
        if row is None:
            # Finished already, or another delivery of the same job is on it.
            log.info("%s %s: finished, missing or held elsewhere", kind.name, row_id)
            return False
        await handler(session, row)
        if not WorkState(row.state).terminal:
            finish(session, row, WorkState.SUCCESS)
        await session.commit()
        return True
