"""Dramatiq middleware that keeps work rows in step with their messages."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware

from core.errors import PermanentJobError
from core.work import WorkKind, fail_row, get_kind, release
from workers import context

log = logging.getLogger(__name__)


def failure_reason(exception: BaseException, attempts: int) -> str:
    """A reason a human can act on, without leaking what an exception message may carry.

    Actors write PermanentJobError messages for users; any other exception's text may hold a
    URL with a password or a secret value, so only its type is named (details are in the log).
    """
    if isinstance(exception, PermanentJobError):
        return str(exception) or type(exception).__name__
    return (
        f"failed after {attempts} attempt{'s' if attempts != 1 else ''}: "
        f"{type(exception).__name__} (details in the worker log)"
    )


class WorkRows(Middleware):
    """Owns the ``work_kind`` actor option: failed work ends ``error``, retried work is released.

    Must come BEFORE Retries in the middleware list: Dramatiq runs ``after_*`` hooks in reverse
    list order, and this hook needs ``message.failed``, which Retries sets.
    """

    @property
    def actor_options(self) -> set[str]:
        return {"work_kind"}

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        kind = self._kind(broker, message)
        if kind is None:
            return
        row_id = message.args[0] if message.args else message.kwargs.get("row_id")
        if row_id is None:
            return
        if message.failed:
            attempts = int(message.options.get("retries", 0)) or 1
            reason = failure_reason(exception, attempts)
            log.warning("%s %s failed for good: %s", kind.name, row_id, reason)
            self._run(kind, row_id, reason)
        else:
            self._run(kind, row_id, None)

    def _kind(self, broker: dramatiq.Broker, message: MessageProxy) -> WorkKind | None:
        try:
            name = broker.get_actor(message.actor_name).options.get("work_kind")
        except ActorNotFound:
            return None
        if not name:
            return None
        try:
            return get_kind(name)
        except KeyError:
            log.error("actor %s names unknown work kind %r", message.actor_name, name)
            return None

    def _run(self, kind: WorkKind, row_id: Any, reason: str | None) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            log.error("no event loop thread: is the AsyncIO middleware installed?")
            return
        loop_thread.run_coroutine(_update_row(kind, row_id, reason))


async def _update_row(kind: WorkKind, row_id: Any, reason: str | None) -> None:
    async with context.database().session() as session:
        if reason is None:
            # A retry follows: hand the row back so that delivery can claim it.
            await release(session, kind.model, row_id)
        else:
            await fail_row(session, kind.model, row_id, reason)
        await session.commit()
