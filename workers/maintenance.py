"""Maintenance ticks: re-send lost work, delete what outlived its retention.

Both are sent by the scheduler's leader with ``slot`` and ``epoch``; each runs once per slot
(core.ticks.claim_tick) in the same transaction as its work.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from core.container_logs import prune_container_logs
from core.deploy_retention import prune_deploys
from core.services import stalled_removals
from core.ticks import claim_tick
from core.work import Resend, mark_resent, recover, registered
from models import (
    AccessToken,
    AuditLog,
    AuthorizationRequest,
    ContainerStat,
    EventLog,
    NodeStat,
    TickRun,
)
from models.base import utcnow
from workers import context

log = logging.getLogger(__name__)

RECOVER = "maintenance.recover"
RETENTION = "maintenance.retention"
# Tick records only need to outlive any redelivery of their slot.
TICK_RUN_RETENTION = timedelta(days=1)


@dramatiq.actor(
    actor_name=RECOVER,
    queue_name="maintenance",
    max_retries=0,  # the next tick comes in 15 s
    max_age=60_000,  # a backlog of stale ticks is dropped, not replayed
)
async def recover_lost_work(slot: int, epoch: int) -> None:
    """Send again the jobs of work left ``created`` or stuck ``ongoing``."""
    settings = context.settings()
    sender = context.sender()
    async with context.database().session() as session:
        if not await claim_tick(session, RECOVER, slot, epoch):
            return
        now = utcnow()
        lost = await recover(
            session, now, registered(), settings.recovery_after, settings.work_deadline
        )
        sent: list[Resend] = []
        for item in lost:
            try:
                await asyncio.to_thread(sender.send, item.job)
            except Exception:
                # The queue is unreachable: the rows stay as they are for the next tick.
                log.warning("re-sending %s %s failed", item.kind.name, item.row_id, exc_info=True)
                break
            sent.append(item)
        await mark_resent(session, sent, now)
        # Service removals have no work row; a service stuck `removing` stands for a lost job.
        stalled = now - timedelta(seconds=settings.service_remove_timeout + settings.recovery_after)
        removals = await stalled_removals(session, stalled)
        try:
            for job in removals:
                await asyncio.to_thread(sender.send, job)
        except Exception:
            log.warning("re-sending service removals failed", exc_info=True)
            await session.rollback()
            return
        await session.commit()
    if lost:
        log.info("recovery re-sent %d of %d lost jobs", len(sent), len(lost))


@dramatiq.actor(
    actor_name=RETENTION,
    queue_name="maintenance",
    max_retries=0,  # hourly; the next one catches up
    max_age=3_600_000,
)
async def apply_retention(slot: int, epoch: int) -> None:
    """Delete expired tokens, old logs (event, audit, container), stats, deploys and tick runs."""
    async with context.database().session() as session:
        if not await claim_tick(session, RETENTION, slot, epoch):
            return
        counts = await delete_expired(session)
        await session.commit()
    log.info("retention deleted %s", ", ".join(f"{n} {what}" for what, n in counts.items()))


async def delete_expired(session: AsyncSession) -> dict[str, int]:
    """Delete rows past their retention; returns how many of each were deleted."""
    settings = context.settings()
    now = utcnow()
    refresh_until = now - timedelta(days=settings.refresh_window_days)
    stats_until = now - timedelta(days=settings.stats_retention_days)
    statements = {
        # Expired and no longer refreshable: no refresh token, or the refresh window has passed.
        "access tokens": delete(AccessToken).where(
            AccessToken.expires_at < now,
            or_(
                AccessToken.refresh_token_hash.is_(None),
                AccessToken.expires_at < refresh_until,
            ),
        ),
        "event logs": delete(EventLog).where(
            EventLog.created_at < now - timedelta(days=settings.event_log_retention_days)
        ),
        "audit logs": delete(AuditLog).where(
            AuditLog.created_at < now - timedelta(days=settings.audit_log_retention_days)
        ),
        "node stats": delete(NodeStat).where(NodeStat.created_at < stats_until),
        "container stats": delete(ContainerStat).where(ContainerStat.created_at < stats_until),
        "tick runs": delete(TickRun).where(TickRun.created_at < now - TICK_RUN_RETENTION),
        # Kept a day past expiry so a late callback still hears "expired", not "unknown".
        "authorization requests": delete(AuthorizationRequest).where(
            AuthorizationRequest.expires_at < now - timedelta(days=1)
        ),
    }
    counts: dict[str, int] = {}
    for what, stmt in statements.items():
        result = await session.execute(stmt.execution_options(synchronize_session=False))
        counts[what] = int(getattr(result, "rowcount", 0) or 0)
    counts["container logs"] = await prune_container_logs(
        session,
        now,
        timedelta(days=settings.container_log_retention_days),
        settings.container_log_max_lines,
    )
    counts["service deploys"] = await prune_deploys(session, settings.deploy_history)
    return counts


BROKER_MAINTENANCE = "maintenance.broker"


def run_broker_maintenance(broker: dramatiq.Broker) -> int:
    """Run RedisBroker maintenance on every queue now; returns how many queues it covered.

    Dramatiq (2.2.1) only runs maintenance — requeueing the unacked messages of workers whose
    heartbeat stopped, expiring old dead letters — inside its dispatch script, on a random
    ``maintenance_chance`` of commands, and exposes no method for it. We call the same script
    with its do_maintenance flag set and a zero-message ``fetch``, so recovery of a dead
    worker's messages is bounded by this tick's period instead of by chance.
    """
    if not isinstance(broker, RedisBroker):
        return 0  # the in-process broker has no workers that can die apart from it
    dispatch = broker.scripts["dispatch"]
    queues = sorted(broker.get_declared_queues() | broker.delay_queues)
    for queue in queues:
        dispatch(
            args=[
                "fetch",
                current_millis(),
                queue,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                1,  # do_maintenance
                broker._max_unpack_size(),
                0,  # fetch no message
            ],
            keys=[broker.namespace],
        )
    return len(queues)


@dramatiq.actor(
    actor_name=BROKER_MAINTENANCE, queue_name="maintenance", max_retries=0, max_age=60_000
)
def broker_maintenance(slot: int, epoch: int) -> None:
    """Requeue messages held by dead workers (every slot; running it twice is harmless)."""
    run_broker_maintenance(dramatiq.get_broker())
