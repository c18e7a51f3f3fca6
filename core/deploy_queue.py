"""One deploy per service at a time: later deploys wait, in the order they were requested.

A deploy may start when no older deploy of its service is unfinished (Kontena #2212-#2215:
queued deploys must neither run concurrently nor get stuck half-started). A waiting deploy
stays ``created`` with ``queued_at`` set; its job re-checks after a short delay.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.work import ACTIVE, fail_row
from models import Service, ServiceDeploy
from models.base import UTCDateTime, utcnow
from models.work import WorkState

NOT_RUNNING = "service is not running"


class Gate(enum.Enum):
    """What a delivery of ``deploys.run`` should do with its deploy."""

    RUN = "run"  # claim it and deploy (or resume)
    WAIT = "wait"  # an older deploy of the service is unfinished: check again later
    DONE = "done"  # finished, aborted or gone: nothing to do


async def gate(session: AsyncSession, deploy_id: str) -> Gate:
    """Decide whether the deploy may run now; aborts it when its service is not running."""
    deploy = await session.get(ServiceDeploy, deploy_id)
    if deploy is None or WorkState(deploy.state).terminal:
        return Gate.DONE
    if deploy.state == WorkState.ONGOING.value:
        return Gate.RUN  # a resume after a crash, or a duplicate: the claim decides
    service = await session.get(Service, deploy.service_id)
    if service is None:
        return Gate.DONE
    older = (
        select(ServiceDeploy.id)
        .where(
            ServiceDeploy.service_id == deploy.service_id,
            ServiceDeploy.id != deploy.id,
            ServiceDeploy.state.in_(ACTIVE),
            or_(
                ServiceDeploy.created_at < deploy.created_at,
                and_(ServiceDeploy.created_at == deploy.created_at, ServiceDeploy.id < deploy.id),
            ),
        )
        .limit(1)
    )
    if (await session.execute(older)).first() is not None:
        return Gate.WAIT
    if service.state != "running":
        await fail_row(session, ServiceDeploy, deploy.id, NOT_RUNNING)
        return Gate.DONE
    return Gate.RUN


async def mark_queued(session: AsyncSession, deploy_id: str, now: datetime | None = None) -> None:
    """Record that the deploy waits; ``sent_at`` keeps recovery from sending it twice."""
    now = now or utcnow()
    await session.execute(
        update(ServiceDeploy)
        .where(ServiceDeploy.id == deploy_id, ServiceDeploy.state == WorkState.CREATED.value)
        .values(
            queued_at=func.coalesce(ServiceDeploy.queued_at, literal(now, UTCDateTime())),
            sent_at=now,
        )
        .execution_options(synchronize_session=False)
    )
