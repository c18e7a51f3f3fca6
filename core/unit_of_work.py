"""One transaction plus the jobs it wants sent: the outbox rule in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from core.jobs import Job, JobBuffer, JobSender

log = logging.getLogger(__name__)


class UnitOfWork:
    """A session whose buffered jobs are sent only after a successful commit."""

    def __init__(self, session: AsyncSession, sender: JobSender) -> None:
        self.session = session
        self._sender = sender
        self._jobs = JobBuffer()
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def enqueue(self, job: Job) -> None:
        """Send ``job`` once this unit of work commits; never if it rolls back."""
        self._jobs.add(job)

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` once this unit of work commits (best effort nudges, e.g. node RPC)."""
        self._after_commit.append(callback)

    async def commit(self) -> list[Job]:
        """Commit, then send the buffered jobs; returns jobs whose send failed."""
        await self.session.commit()
        await self._run_after_commit()
        if not self._jobs:
            return []
        # Sending may block on the network (Redis), so keep it off the event loop.
        return await asyncio.to_thread(self._jobs.flush, self._sender)

    async def _run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                # The change is committed; a lost nudge is caught up by periodic checks.
                log.exception("after-commit callback failed")

    async def rollback(self) -> None:
        """Roll back and drop the buffered jobs."""
        self._jobs.discard()
        self._after_commit.clear()
        await self.session.rollback()
