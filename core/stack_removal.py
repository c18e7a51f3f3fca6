"""Stack removal (reference §2.5, §3.7 step 5): the request, then the ``stacks.remove`` job.

The request hides the stack and commits a :class:`StackRemoval`; the job stops every service,
removes them in reverse link order (each waiting for its agents, as a service delete does) and
finally deletes the stack row, which frees the name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select, update

from core import services, work
from core.auth import Principal
from core.deploy_actions import notify_service, remove_service
from core.errors import ErrorTree, Invalid
from core.events import Severity, record_event
from core.stack_jobs import (
    LEASE_SECONDS,
    STACK_REMOVE,
    StackEnv,
    StackFailed,
    StackLost,
    fenced,
    mark_removing,
)
from core.stack_spec import link_order
from core.stacks import stack_path, stack_services
from core.unit_of_work import UnitOfWork
from models import Grid, Service, ServiceInstance, Stack, StackRemoval
from models.base import utcnow
from models.work import WorkState

log = logging.getLogger(__name__)


async def delete_stack(uow: UnitOfWork, principal: Principal, grid: Grid, stack: Stack) -> None:
    """Hide the stack and queue its removal; 422 when another stack links to its services."""
    session = uow.session
    rows = await stack_services(session, grid, stack.name)
    errors: ErrorTree = {}
    for row in rows:
        users = [
            user.stack + "/" + user.name
            for user in await services.linked_from(session, grid, row)
            if user.stack != stack.name
        ]
        if users:
            errors[row.name] = {
                "service": "Cannot delete service that is linked to another service "
                f"({', '.join(users)})"
            }
    if errors:
        raise Invalid({"services": errors})
    stack.removing = True
    removal = StackRemoval(
        grid_id=grid.id,
        stack_id=stack.id,
        stack_name=stack.name,
        state=WorkState.CREATED.value,
        sent_at=utcnow(),
    )
    session.add(removal)
    await session.flush()
    record_event(
        session,
        grid.id,
        "stack:remove_request",
        f"removal of stack {stack_path(grid.name, stack.name)} requested by {principal.user.email}",
        stack=stack.name,
    )
    uow.enqueue(STACK_REMOVE.job(removal.id))


async def run_stack_removal(env: StackEnv, removal_id: str, max_deliveries: int) -> bool:
    """One delivery of ``stacks.remove``; False when there was nothing to do."""
    async with env.deploy.db.session() as session:
        row = await work.claim(
            session, StackRemoval, removal_id, LEASE_SECONDS, max_deliveries=max_deliveries
        )
        await session.commit()
    if row is None:
        return False
    try:
        try:
            await _remove_stack(env, row, row.attempts)
        except StackFailed as exc:
            await _fail(env, row, str(exc))
    except StackLost:
        log.warning("stack removal %s was finished or taken over meanwhile", removal_id)
    return True


async def _fail(env: StackEnv, row: StackRemoval, reason: str) -> None:
    """End the removal ``error``; the stack becomes visible again with what is left of it."""
    async with env.deploy.db.session() as session:
        stack = await session.get(Stack, row.stack_id)
        if stack is not None:
            stack.removing = False
        record_event(
            session,
            row.grid_id,
            "stack:remove",
            f"removal of stack {row.stack_name} failed: {reason}",
            severity=Severity.ERROR,
            stack=row.stack_name,
        )
        await fenced(
            session,
            StackRemoval,
            row.id,
            row.attempts,
            state=WorkState.ERROR.value,
            finished_at=utcnow(),
            reason=reason,
            lease_until=None,
        )
        await session.commit()


async def _remove_stack(env: StackEnv, row: StackRemoval, attempt: int) -> None:
    """Stop every service, remove them in reverse link order, then delete the stack."""
    async with env.deploy.db.session() as session:
        rows = list(
            (
                await session.execute(
                    select(Service).where(
                        Service.grid_id == row.grid_id, Service.stack == row.stack_name
                    )
                )
            ).scalars()
        )
        for service in rows:
            if service.state != services.REMOVING:
                service.state = "stopped"
        await session.execute(
            update(ServiceInstance)
            .where(
                ServiceInstance.service_id.in_([s.id for s in rows]),
                ServiceInstance.desired_state != "terminated",
            )
            .values(desired_state="stopped", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await fenced(session, StackRemoval, row.id, attempt)
        await session.commit()
        order = removal_order(rows, row.stack_name)
    for service_id in order:
        await notify_service(env.deploy, service_id)
    for service_id in order:
        async with env.deploy.db.session() as session:
            target = await session.get(Service, service_id)
            grid = await session.get(Grid, row.grid_id)
            if target is None or grid is None:
                continue
            users = [
                services.qualified_name(user)
                for user in await services.linked_from(session, grid, target)
                if user.stack != row.stack_name
            ]
            if users:
                raise StackFailed(
                    f"service {row.stack_name}/{target.name} is linked from {', '.join(users)}"
                )
            await mark_removing(session, target)
            await fenced(session, StackRemoval, row.id, attempt)
            await session.commit()
        await remove_service(env.deploy, service_id, env.remove_timeout)
    async with env.deploy.db.session() as session:
        stack = await session.get(Stack, row.stack_id)
        if stack is not None:
            await session.delete(stack)
        record_event(
            session,
            row.grid_id,
            "stack:remove",
            f"stack {row.stack_name} removed",
            stack=row.stack_name,
        )
        await fenced(
            session,
            StackRemoval,
            row.id,
            attempt,
            state=WorkState.SUCCESS.value,
            finished_at=utcnow(),
            lease_until=None,
        )
        await session.commit()


def removal_order(rows: Sequence[Service], stack: str) -> list[str]:
    """Service ids with every service before the services it links to (reverse link order)."""
    by_id = {row.id: row for row in rows}
    hashes = [
        {
            "name": row.name,
            "links": [
                {"name": by_id[str(link.get("service_id"))].name}
                for link in row.spec.get("links") or []
                if str(link.get("service_id")) in by_id
            ],
        }
        for row in rows
    ]
    order, _ = link_order(hashes, stack)
    # A cycle cannot be stored, but never leave a service out because of one.
    names = [*order, *(row.name for row in rows if row.name not in order)]
    ids = {row.name: row.id for row in rows}
    return [ids[name] for name in reversed(names)]
