"""Work rows through their life: claim, finish, fail, recover (the outbox's other half).

A work row (a deploy, an authorization, a certificate request…) is committed in ``created``
together with the state change that asked for it; a job carrying only its id is sent after the
commit. Dramatiq delivers at least once, so every delivery first *claims* the row with one atomic
UPDATE: a duplicate, or a message for finished work, claims nothing and does nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.jobs import Job
from models.base import UTCDateTime, utcnow
from models.work import WorkState

# A minute longer than the slowest actor may run (Dramatiq's TimeLimit: 10 minutes); a worker
# that dies keeps the row only this long before another delivery may claim it. Kinds whose
# actors set a longer time_limit set a longer lease_seconds.
DEFAULT_LEASE_SECONDS = 660
# A row claimed more often than this without finishing keeps killing (or timing out) its
# worker: the next claim quarantines it instead of running it again (KONTENA_MAX_DELIVERIES).
DEFAULT_MAX_DELIVERIES = 5
# Rows handled per kind by one recovery run, so a huge backlog is worked through in slices.
RECOVERY_BATCH = 500

ACTIVE = (WorkState.CREATED.value, WorkState.ONGOING.value)


@dataclass(frozen=True)
class WorkKind:
    """One kind of queued work: its table (a WorkRowMixin model with an ``id``) and its actor.

    The actor receives the row id as its only argument.
    """

    name: str
    model: type[Any]
    actor: str
    queue: str
    lease_seconds: int = DEFAULT_LEASE_SECONDS

    def job(self, row_id: Any) -> Job:
        """The job that performs the work of row ``row_id``."""
        return Job(actor=self.actor, queue=self.queue, args=(row_id,))


@dataclass(frozen=True)
class Resend:
    """A lost job the recovery tick sends again."""

    kind: WorkKind
    row_id: Any
    job: Job


_KINDS: dict[str, WorkKind] = {}


def register(kind: WorkKind) -> WorkKind:
    """Make ``kind`` known to workers and to recovery (call at import of its service)."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"work kind {kind.name!r} is already registered differently")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind (tests register throw-away kinds)."""
    _KINDS.pop(name, None)


def get_kind(name: str) -> WorkKind:
    """The registered kind called ``name``; KeyError when unknown."""
    return _KINDS[name]


def registered() -> list[WorkKind]:
    """Every registered kind."""
    return list(_KINDS.values())


def _claimable(model: type[Any], now: datetime) -> Any:
    # `created`, or `ongoing` whose holder's lease ran out (it died, or released it to retry).
    return or_(
        model.state == WorkState.CREATED.value,
        and_(model.state == WorkState.ONGOING.value, model.lease_until < now),
    )


async def claim(
    session: AsyncSession,
    model: type[Any],
    row_id: Any,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    *,
    now: datetime | None = None,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
) -> Any | None:
    """Take the row for this delivery; None when it is finished or another worker holds it.

    A row already delivered ``max_deliveries`` times without finishing ends ``error``
    (quarantined) instead: Dramatiq redelivers the message of a worker that died, so a job that
    kills its worker would otherwise come back forever.
    """
    now = now or utcnow()
    stmt = (
        update(model)
        .where(model.id == row_id, _claimable(model, now))
        .values(
            state=WorkState.ONGOING.value,
            started_at=func.coalesce(model.started_at, literal(now, UTCDateTime())),
            attempts=model.attempts + 1,
            lease_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(model)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is not None and row.attempts > max_deliveries:
        finish(
            session,
            row,
            WorkState.ERROR,
            f"quarantined after {row.attempts - 1} deliveries that did not finish",
        )
        return None
    return row


def finish(session: AsyncSession, row: Any, state: WorkState, reason: str | None = None) -> None:
    """End claimed work in a terminal state; the caller commits."""
    if not state.terminal:
        raise ValueError(f"{state} is not a terminal state")
    row.state = state.value
    row.finished_at = utcnow()
    row.reason = reason
    row.lease_until = None
    session.add(row)


async def release(
    session: AsyncSession, model: type[Any], row_id: Any, *, now: datetime | None = None
) -> None:
    """Give the row back after a failed attempt, so Dramatiq's retry can claim it at once."""
    now = now or utcnow()
    await session.execute(
        update(model)
        .where(model.id == row_id, model.state == WorkState.ONGOING.value)
        .values(lease_until=now)
        .execution_options(synchronize_session=False)
    )


async def fail_row(
    session: AsyncSession,
    model: type[Any],
    row_id: Any,
    reason: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Mark unfinished work ``error`` (retries exhausted, permanent error); False if it ended."""
    now = now or utcnow()
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.state.in_(ACTIVE))
        .values(state=WorkState.ERROR.value, finished_at=now, reason=reason, lease_until=None)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def mark_sent(
    session: AsyncSession, model: type[Any], row_ids: Iterable[Any], *, now: datetime | None = None
) -> None:
    """Record when the rows' jobs were (re-)sent; recovery waits a while after that."""
    ids = list(row_ids)
    if not ids:
        return
    await session.execute(
        update(model)
        .where(model.id.in_(ids))
        .values(sent_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def _lost(model: type[Any], now: datetime, cutoff: datetime) -> Any:
    # A row is lost when nobody has sent or held it for `recovery_after`: `created` and not sent
    # (or sent long ago), or `ongoing` with a lease that ran out that long ago.
    return or_(
        and_(
            model.state == WorkState.CREATED.value,
            or_(
                model.sent_at < cutoff,
                and_(model.sent_at.is_(None), model.created_at < cutoff),
            ),
        ),
        and_(model.state == WorkState.ONGOING.value, model.lease_until < cutoff),
    )


async def recover(
    session: AsyncSession,
    now: datetime,
    kinds: Sequence[WorkKind],
    recovery_after: int,
    deadline: int,
) -> list[Resend]:
    """Lost work to send again; lost rows older than ``deadline`` seconds end ``error`` instead.

    The caller sends the returned jobs, calls :func:`mark_sent` and commits.
    """
    cutoff = now - timedelta(seconds=recovery_after)
    too_old = now - timedelta(seconds=deadline)
    resends: list[Resend] = []
    for kind in kinds:
        model = kind.model
        rows = (
            await session.execute(
                select(model.id, model.created_at)
                .where(_lost(model, now, cutoff))
                .order_by(model.created_at)
                .limit(RECOVERY_BATCH)
            )
        ).all()
        expired = [row.id for row in rows if row.created_at < too_old]
        if expired:
            await session.execute(
                update(model)
                .where(model.id.in_(expired), _lost(model, now, cutoff))
                .values(
                    state=WorkState.ERROR.value,
                    finished_at=now,
                    lease_until=None,
                    reason=f"deadline exceeded: the work did not finish within {deadline} s "
                    "of being requested",
                )
                .execution_options(synchronize_session=False)
            )
        resends.extend(
            Resend(kind=kind, row_id=row.id, job=kind.job(row.id))
            for row in rows
            if row.created_at >= too_old
        )
    return resends


async def mark_resent(session: AsyncSession, resent: Iterable[Resend], now: datetime) -> None:
    """:func:`mark_sent` for every resent row, grouped by table."""
    by_kind: dict[str, list[Any]] = defaultdict(list)
    models: dict[str, type[Any]] = {}
    for item in resent:
        by_kind[item.kind.name].append(item.row_id)
        models[item.kind.name] = item.kind.model
    for name, ids in by_kind.items():
        await mark_sent(session, models[name], ids, now=now)
