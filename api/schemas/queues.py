"""Response shapes of ``/v1/queues``."""

from __future__ import annotations

from typing import Any

import msgspec

from core.queues import DeadLetter, QueuesReport
from core.work import registered


class QueueOut(msgspec.Struct):
    """One queue's depth."""

    name: str
    ready: int
    delayed: int
    in_progress: int
    dead: int
    oldest_ready_age: float | None


class QueuesOut(msgspec.Struct):
    """Every queue and the live worker processes."""

    queues: list[QueueOut]
    workers: list[str]
    embedded: bool


class DeadLetterOut(msgspec.Struct):
    """A dead letter; ``work_kind`` + ``args`` name the work row the job acts on."""

    message_id: str
    redis_message_id: str
    actor: str
    work_kind: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    failed_at: float | None


class DeadLettersOut(msgspec.Struct):
    """The newest dead letters of one queue."""

    queue: str
    messages: list[DeadLetterOut]


def render_report(report: QueuesReport) -> QueuesOut:
    """The JSON of a queue report."""
    return QueuesOut(
        queues=[QueueOut(**vars(q)) for q in report.queues],
        workers=report.workers,
        embedded=report.embedded,
    )


def render_dead(queue: str, letters: list[DeadLetter]) -> DeadLettersOut:
    """The JSON of a dead-letter list, each tagged with the work kind its actor performs."""
    kinds = {kind.actor: kind.name for kind in registered()}
    return DeadLettersOut(
        queue=queue,
        messages=[DeadLetterOut(work_kind=kinds.get(d.actor), **vars(d)) for d in letters],
    )
