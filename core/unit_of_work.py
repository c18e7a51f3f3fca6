"""One transaction plus the jobs it wants sent: the outbox rule in one place."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from core.jobs import Job, JobBuffer, JobSender


class UnitOfWork:
    """A session whose buffered jobs are sent only after a successful commit."""

    def __init__(self, session: AsyncSession, sender: JobSender) -> None:
        self.session = session
        self._sender = sender
        self._jobs = JobBuffer()

    def enqueue(self, job: Job) -> None:
        """Send ``job`` once this unit of work commits; never if it rolls back."""
        self._jobs.add(job)

    async def commit(self) -> list[Job]:
        """Commit, then send the buffered jobs; returns jobs whose send failed."""
        await self.session.commit()
        if not self._jobs:
            return []
        # Sending may block on the network (Redis), so keep it off the event loop.
        return await asyncio.to_thread(self._jobs.flush, self._sender)

    async def rollback(self) -> None:
        """Roll back and drop the buffered jobs."""
        self._jobs.discard()
        await self.session.rollback()
