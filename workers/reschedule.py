"""The continuous rescheduling tick (reference §3.6, ARCHITECTURE.md §7)."""

from __future__ import annotations

import logging

import dramatiq

from core.reschedule import reschedule
from core.ticks import claim_tick
from workers import context

log = logging.getLogger(__name__)

RESCHEDULE = "services.reschedule"


@dramatiq.actor(
    actor_name=RESCHEDULE,
    queue_name="deploys",
    max_retries=0,  # the next tick comes in KONTENA_RESCHEDULE_INTERVAL seconds
    max_age=60_000,  # a backlog of stale ticks is dropped, not replayed
)
async def reschedule_services(slot: int, epoch: int) -> None:
    """Redeploy the running stateless services whose placement or spec calls for it."""
    db = context.database()
    async with db.session() as session:
        # Claimed on its own: each redeploy is a transaction of its own (with its service row
        # locked), and a tick that dies half-way is simply completed by the next one.
        if not await claim_tick(session, RESCHEDULE, slot, epoch):
            return
        await session.commit()
    queued = await reschedule(db, context.sender())
    if queued:
        log.info("rescheduling queued %d deploy(s)", len(queued))
