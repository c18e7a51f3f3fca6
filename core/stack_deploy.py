"""Stack deploys (reference §3.7): the request side and the ``stacks.deploy`` job.

The request applies the latest revision to the services (update or create, in link order)
and commits a :class:`StackDeploy` in ``created`` (visible before any service deploy starts,
Kontena #2523); the ``stacks.deploy`` job then removes the services the revision dropped and
deploys the others one by one in link order, each through an ordinary service deploy that it
awaits. The first failure ends the stack deploy ``error`` with a reason naming the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import service_actions, services, work
from core.auth import Principal
from core.deploy_actions import remove_service
from core.deploy_queue import Gate, mark_queued
from core.deployer import run_deploy
from core.errors import ErrorTree, Invalid, NotFound
from core.events import Severity, record_event
from core.service_spec import ServiceCreate, ServiceUpdate
from core.stack_jobs import (
    LEASE_SECONDS,
    STACK_DEPLOY,
    StackEnv,
    StackFailed,
    StackLost,
    fenced,
    mark_removing,
)
from core.stack_spec import link_order
from core.stacks import latest_revision, null_stack_error, stack_path, stack_services
from core.unit_of_work import UnitOfWork
from core.validation import convert
from models import Grid, Service, ServiceDeploy, Stack, StackDeploy, StackRevision
from models.base import utcnow
from models.services import NULL_STACK
from models.work import WorkState

log = logging.getLogger(__name__)

# --- request side -----------------------------------------------------------------------


async def deploy_stack(
    uow: UnitOfWork, principal: Principal, grid: Grid, stack: Stack
) -> StackDeploy:
    """Apply the latest revision to the services and queue a stack deploy (``created``)."""
    session = uow.session
    revision = await latest_revision(session, stack)
    if revision is None:
        raise Invalid({"stack": "Stack has no revisions"})
    existing = {row.name: row for row in await stack_services(session, grid, stack.name)}
    hashes = {item["name"]: item for item in revision.services}
    order, link_errors = link_order(revision.services, stack.name)
    errors: ErrorTree = dict(link_errors)
    for name in order:
        try:
            if name in existing:
                row = existing[name]
                data = convert(hashes[name], ServiceUpdate)
                await services.update_service(session, principal, grid, row, data)
            else:
                row = await services.create_service(
                    session, principal, grid, convert(hashes[name], ServiceCreate), stack=stack.name
                )
            row.stack_revision = revision.revision
        except Invalid as exc:
            errors[name] = exc.tree
    if errors:
        raise Invalid({"services": errors})
    now = utcnow()
    deploy = StackDeploy(
        stack_id=stack.id,
        grid_id=grid.id,
        revision=revision.revision,
        state=WorkState.CREATED.value,
        created_at=now,
        sent_at=now,
        service_deploys=[],
    )
    session.add(deploy)
    await session.flush()
    record_event(
        session,
        grid.id,
        "stack:deploy_request",
        f"deploy of stack {stack_path(grid.name, stack.name)} requested by {principal.user.email}",
        stack=stack.name,
    )
    uow.enqueue(STACK_DEPLOY.job(deploy.id))
    return deploy


async def stop_stack(uow: UnitOfWork, principal: Principal, grid: Grid, name: str) -> None:
    """Stop every service of the stack."""
    for row in await stack_services(uow.session, grid, name):
        await service_actions.set_service_state(uow, principal, grid, row, "stopped")


async def restart_stack(uow: UnitOfWork, principal: Principal, grid: Grid, name: str) -> None:
    """Restart every service of the stack."""
    for row in await stack_services(uow.session, grid, name):
        await service_actions.restart_service(uow, principal, grid, row)


def refuse_null(name: str, verb: str) -> None:
    """422 for actions on the implicit ``null`` stack."""
    if name == NULL_STACK:
        raise null_stack_error(verb)


async def list_deploys(session: AsyncSession, stack: Stack) -> Sequence[StackDeploy]:
    """The stack's deploys, newest first."""
    query = (
        select(StackDeploy)
        .where(StackDeploy.stack_id == stack.id)
        .order_by(StackDeploy.created_at.desc(), StackDeploy.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def get_deploy(session: AsyncSession, stack: Stack, deploy_id: str) -> StackDeploy:
    """One deploy of the stack, or 404 ``Not found``."""
    query = select(StackDeploy).where(StackDeploy.stack_id == stack.id, StackDeploy.id == deploy_id)
    deploy = (await session.execute(query)).scalar_one_or_none()
    if deploy is None:
        raise NotFound()
    return deploy


async def service_deploys(
    session: AsyncSession, deploys: Sequence[StackDeploy]
) -> dict[str, tuple[ServiceDeploy, Service]]:
    """The service deploys (with their services) the given stack deploys started, by id."""
    ids = [str(item["deploy_id"]) for row in deploys for item in row.service_deploys or []]
    if not ids:
        return {}
    query = (
        select(ServiceDeploy, Service)
        .join(Service, Service.id == ServiceDeploy.service_id)
        .where(ServiceDeploy.id.in_(ids))
    )
    return {row[0].id: (row[0], row[1]) for row in await session.execute(query)}


# --- worker side ------------------------------------------------------------------------


async def must_wait(env: StackEnv, deploy_id: str) -> bool:
    """True while an older deploy of the same stack is unfinished (this one stays ``created``)."""
    # Deploys of one stack run one at a time in request order, or their services' deploys and
    # removals would interleave.
    async with env.deploy.db.session() as session:
        row = await session.get(StackDeploy, deploy_id)
        if row is None or row.state != WorkState.CREATED.value:
            return False
        older = select(StackDeploy.id).where(
            StackDeploy.stack_id == row.stack_id,
            StackDeploy.id != row.id,
            StackDeploy.state.in_((WorkState.CREATED.value, WorkState.ONGOING.value)),
            or_(
                StackDeploy.created_at < row.created_at,
                and_(StackDeploy.created_at == row.created_at, StackDeploy.id < row.id),
            ),
        )
        if (await session.execute(older.limit(1))).first() is None:
            return False
        now = utcnow()
        row.queued_at = row.queued_at or now
        row.sent_at = now  # the job re-sends itself: recovery need not
        await session.commit()
        return True


async def run_stack_deploy(env: StackEnv, deploy_id: str, max_deliveries: int) -> bool:
    """One delivery of ``stacks.deploy``; False when there was nothing to do."""
    async with env.deploy.db.session() as session:
        row = await work.claim(
            session, StackDeploy, deploy_id, LEASE_SECONDS, max_deliveries=max_deliveries
        )
        await session.commit()
    if row is None:
        return False
    run = StackDeployRun(env, row)
    try:
        await run.execute()
    except StackLost:
        log.warning("stack deploy %s was finished or taken over meanwhile", deploy_id)
    return True


class StackDeployRun:
    """One attempt at a stack deploy this worker claimed."""

    def __init__(self, env: StackEnv, row: StackDeploy) -> None:
        self.env = env
        self.id = row.id
        self.attempt = row.attempts
        self.stack_id = row.stack_id
        self.grid_id = row.grid_id
        self.revision = row.revision
        self.progress: list[dict[str, Any]] = [dict(item) for item in row.service_deploys or []]
        self.path = ""
        self.name = ""

    async def execute(self) -> None:
        """Remove dropped services, deploy the others in link order; end success or error."""
        try:
            order = await self._start()
            await self._remove_dropped(set(order))
            for service in order:
                await self._deploy_service(service)
        except StackFailed as exc:
            await self._finish(False, str(exc))
            return
        await self._finish(True, None)

    async def _start(self) -> list[str]:
        async with self.env.deploy.db.session() as session:
            stack = await session.get(Stack, self.stack_id)
            grid = await session.get(Grid, self.grid_id)
            if stack is None or grid is None:
                raise StackLost(self.id)  # deleted: the deploy row goes with it
            self.name, self.path = stack.name, stack_path(grid.name, stack.name)
            if stack.removing:
                raise StackFailed(f"stack {self.path} is being removed")
            revision = (
                await session.execute(
                    select(StackRevision).where(
                        StackRevision.stack_id == stack.id,
                        StackRevision.revision == self.revision,
                    )
                )
            ).scalar_one_or_none()
            if revision is None:
                raise StackFailed(f"revision {self.revision} of stack {self.path} is gone")
            order, errors = link_order(revision.services, stack.name)
            if errors:
                raise StackFailed(f"stack {self.path} has broken links: {errors}")
            await fenced(session, StackDeploy, self.id, self.attempt)
            if self.attempt == 1:
                self._event(session, f"stack {self.path} deploy started")
            await session.commit()
        return order

    async def _remove_dropped(self, keep: set[str]) -> None:
        """Services of the stack that the revision no longer has are removed first."""
        async with self.env.deploy.db.session() as session:
            grid = await session.get(Grid, self.grid_id)
            assert grid is not None
            rows = (
                await session.execute(
                    select(Service).where(Service.grid_id == grid.id, Service.stack == self.name)
                )
            ).scalars()
            dropped = [row for row in rows if row.name not in keep]
            for row in dropped:
                users = [
                    services.qualified_name(user)
                    for user in await services.linked_from(session, grid, row)
                    if not (user.stack == self.name and user.name in keep)
                ]
                if users:
                    raise StackFailed(
                        f"cannot remove service {self.name}/{row.name} of stack {self.path}: "
                        f"it is linked from {', '.join(users)}"
                    )
                await mark_removing(session, row)
            await fenced(session, StackDeploy, self.id, self.attempt)
            await session.commit()
            ids = [(row.id, row.name) for row in dropped]
        for service_id, name in ids:
            await remove_service(self.env.deploy, service_id, self.env.remove_timeout)
            log.info("stack deploy %s: removed service %s", self.id, name)

    async def _deploy_service(self, name: str) -> None:
        """Deploy one service (or resume awaiting its deploy) and wait until it finished."""
        deploy_id = next((p["deploy_id"] for p in self.progress if p["service"] == name), None)
        if deploy_id is None:
            deploy_id = await self._create_service_deploy(name)
        outcome = await self._await(deploy_id)
        if outcome.state != WorkState.SUCCESS.value:
            raise StackFailed(
                f"halting deploy of stack {self.path}: service {self.name}/{name} "
                f"deploy failed: {outcome.reason or 'unknown error'}"
            )

    async def _create_service_deploy(self, name: str) -> str:
        async with self.env.deploy.db.session() as session:
            grid = await session.get(Grid, self.grid_id)
            service = (
                await session.execute(
                    select(Service).where(
                        Service.grid_id == self.grid_id,
                        Service.stack == self.name,
                        Service.name == name,
                        Service.state != services.REMOVING,
                    )
                )
            ).scalar_one_or_none()
            if service is None or grid is None:
                raise StackFailed(f"service {self.name}/{name} of stack {self.path} is gone")
            uow = UnitOfWork(session, self.env.sender)
            deploy = await service_actions.create_deploy(uow, grid, service)
            self.progress.append({"service": name, "deploy_id": deploy.id})
            await fenced(
                session, StackDeploy, self.id, self.attempt, service_deploys=list(self.progress)
            )
            await uow.commit()
            return deploy.id

    async def _await(self, deploy_id: str) -> ServiceDeploy:
        """Run the service deploy here unless another worker has it; poll until it ended.

        Running it in this job (rather than only waiting for the ``deploys.run`` job) means a
        worker with a single thread cannot wait on itself.
        """
        started = time.monotonic()
        while True:
            outcome = await run_deploy(self.env.deploy, deploy_id)
            async with self.env.deploy.db.session() as session:
                row = await session.get(ServiceDeploy, deploy_id)
                if row is None:
                    raise StackFailed(f"a service deploy of stack {self.path} was removed")
                if WorkState(row.state).terminal:
                    await fenced(session, StackDeploy, self.id, self.attempt)
                    await session.commit()
                    return row
                if outcome is Gate.WAIT:
                    await mark_queued(session, deploy_id)
                await fenced(session, StackDeploy, self.id, self.attempt)
                await session.commit()
            if time.monotonic() - started > self.env.deploy.deadline:
                raise StackFailed(f"halting deploy of stack {self.path}: deadline exceeded")
            await asyncio.sleep(self.env.poll_interval)

    async def _finish(self, success: bool, reason: str | None) -> None:
        async with self.env.deploy.db.session() as session:
            await fenced(
                session,
                StackDeploy,
                self.id,
                self.attempt,
                state=WorkState.SUCCESS.value if success else WorkState.ERROR.value,
                finished_at=utcnow(),
                reason=reason,
                lease_until=None,
            )
            if success:
                self._event(session, f"stack {self.path} deployed")
            else:
                self._event(
                    session, f"deploy of stack {self.path} errored: {reason}", Severity.ERROR
                )
            await session.commit()

    def _event(
        self, session: AsyncSession, message: str, severity: Severity = Severity.INFO
    ) -> None:
        record_event(
            session, self.grid_id, "stack:deploy", message, severity=severity, stack=self.name
        )
