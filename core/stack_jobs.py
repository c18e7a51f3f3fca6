"""What the stack jobs share: their work kinds, environment, errors and fenced writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core import services, work
from core.deployer import DeployEnv
from core.jobs import JobSender
from models import Service, ServiceInstance, StackDeploy, StackRemoval
from models.base import utcnow
from models.work import WorkState

QUEUE = "deploys"
# Renewed on every poll while the stack deploy waits for its services.
LEASE_SECONDS = 120
STACK_DEPLOY = work.register(
    work.WorkKind(
        name="stack_deploy",
        model=StackDeploy,
        actor="stacks.deploy",
        queue=QUEUE,
        lease_seconds=LEASE_SECONDS,
    )
)
STACK_REMOVE = work.register(
    work.WorkKind(
        name="stack_remove",
        model=StackRemoval,
        actor="stacks.remove",
        queue=QUEUE,
        lease_seconds=LEASE_SECONDS,
    )
)


@dataclass
class StackEnv:
    """What stack jobs need: the deploy environment, a job sender and the removal timeout."""

    deploy: DeployEnv
    sender: JobSender
    remove_timeout: float = 120.0
    poll_interval: float = 0.2


class StackFailed(Exception):
    """The stack job ends ``error`` with this reason."""


class StackLost(Exception):
    """Another delivery took the stack deploy over (or it was finished meanwhile)."""


async def fenced(
    session: AsyncSession, model: Any, row_id: str, attempt: int, **values: Any
) -> None:
    """Write to a claimed row only while this attempt holds it; renews the lease."""
    values.setdefault("lease_until", utcnow() + timedelta(seconds=LEASE_SECONDS))
    result = await session.execute(
        update(model)
        .where(
            model.id == row_id,
            model.state == WorkState.ONGOING.value,
            model.attempts == attempt,
        )
        .values(**values)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        raise StackLost(row_id)


async def mark_removing(session: AsyncSession, service: Service) -> None:
    """Hide the service and ask its instances to terminate (the removal waits for agents)."""
    service.state = services.REMOVING
    await session.execute(
        update(ServiceInstance)
        .where(ServiceInstance.service_id == service.id)
        .values(desired_state="terminated", updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
