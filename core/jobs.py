"""Jobs as plain data, buffered during a request and sent only after its commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Queues split by concern so slow certificate work cannot starve deploys.
QUEUES = ("deploys", "nodes", "certs", "maintenance")


@dataclass(frozen=True)
class Job:
    """A message to one actor; it carries ids only, never objects."""

    actor: str
    queue: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class JobSender(Protocol):
    """Something that hands jobs to the queue (Dramatiq on Redis, or in-process)."""

    def send(self, job: Job) -> None:
        """Send one job; raises when the queue cannot be reached."""


class JobBuffer:
    """Jobs enqueued during a unit of work; flushed after commit, dropped on rollback."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def add(self, job: Job) -> None:
        """Remember a job to send once the transaction commits."""
        self._jobs.append(job)

    def __len__(self) -> int:
        return len(self._jobs)

    def discard(self) -> None:
        """Forget every buffered job (the transaction rolled back)."""
        self._jobs.clear()

    def flush(self, sender: JobSender) -> list[Job]:
        """Send every buffered job; returns the ones that failed (recovery re-sends them)."""
        failed = []
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            try:
                sender.send(job)
            except Exception:
                # The work row is committed in `created`; the recovery tick re-sends it.
                log.exception("sending %s failed; the recovery tick will re-send it", job.actor)
                failed.append(job)
        return failed
