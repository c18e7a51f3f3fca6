"""Node actors: the liveness sweep.

An API process that is alive notices a dropped agent socket at once and marks the node
offline itself; this sweep covers the rest (an API process that died holding sockets, a socket
that hangs without keepalive answers), like Kontena's NodeCleanupJob.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq

from core.node_connection import mark_stale_offline
from core.ticks import claim_tick
from models.base import utcnow
from workers import context

log = logging.getLogger(__name__)

LIVENESS = "nodes.liveness"


@dramatiq.actor(
    actor_name=LIVENESS,
    queue_name="nodes",
    max_retries=0,  # the next tick comes in 10 s
    max_age=30_000,  # a backlog of stale ticks is dropped, not replayed
)
async def sweep_node_liveness(slot: int, epoch: int) -> None:
    """Mark connected nodes whose keepalive is overdue offline."""
    now = utcnow()
    cutoff = now - timedelta(seconds=context.settings().node_offline_after)
    async with context.database().session() as session:
        if not await claim_tick(session, LIVENESS, slot, epoch):
            return
        stale = await mark_stale_offline(session, now, cutoff)
        await session.commit()
    if not stale:
        return
    log.info("liveness: %d node(s) offline: %s", len(stale), ", ".join(n.name for n in stale))
    rpc = context.node_rpc()
    for node in stale:
        # If a live API process still holds a hung socket, it closes it now (4031).
        try:
            await rpc.control(node.id)
        except Exception as exc:  # best effort: Redis down must not fail the sweep
            log.debug("liveness: control of node %s failed: %s", node.id, exc)
