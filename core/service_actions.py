"""Service actions: deploy, scale, start, stop, restart; deploy objects and instances.

Deploy and scale follow the outbox rule (ARCHITECTURE.md §5): the state change and a
:class:`ServiceDeploy` in ``created`` are written in the request's transaction, and the
``deploys.run`` job carrying the deploy id is sent after the commit. Start, stop and restart
change desired state and nudge the nodes through a job; they create no deploy object.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import work
from core.auth import Principal
from core.errors import NotFound
from core.events import record_event
from core.jobs import Job
from core.services import service_path
from core.unit_of_work import UnitOfWork
from models import Grid, Node, Service, ServiceDeploy, ServiceInstance, WorkState
from models.base import utcnow

DEPLOY_QUEUE = "deploys"
# The recovery tick re-sends deploys whose job was lost (Redis restart, crash after commit).
SERVICE_DEPLOY = work.register(
    work.WorkKind(
        name="service_deploy", model=ServiceDeploy, actor="deploys.run", queue=DEPLOY_QUEUE
    )
)


def _event(principal: Principal, grid: Grid, service: Service, verb: str) -> str:
    path = service_path(grid.name, service)
    return f"{verb} of service {path} requested by {principal.user.email}"


async def _new_deploy(uow: UnitOfWork, grid: Grid, service: Service, force: bool) -> ServiceDeploy:
    """A deploy in ``created`` whose job is sent when the request commits."""
    now = utcnow()
    service.state = "running"
    service.deploy_requested_at = now
    deploy = ServiceDeploy(
        service_id=service.id,
        grid_id=grid.id,
        force=force,
        state=WorkState.CREATED.value,
        created_at=now,
        sent_at=now,
        instance_deploys=[],
    )
    uow.session.add(deploy)
    await uow.session.flush()
    uow.enqueue(SERVICE_DEPLOY.job(deploy.id))
    return deploy


async def create_deploy(uow: UnitOfWork, grid: Grid, service: Service) -> ServiceDeploy:
    """A deploy of ``service`` in ``created``, its job sent on commit (stack deploys use it)."""
    return await _new_deploy(uow, grid, service, False)


async def deploy_service(
    uow: UnitOfWork, principal: Principal, grid: Grid, service: Service, *, force: bool = False
) -> ServiceDeploy:
    """Ask for a deploy; ``force`` bumps the revision so every instance is recreated."""
    if force:
        service.revision += 1
    deploy = await _new_deploy(uow, grid, service, force)
    record_event(
        uow.session,
        grid.id,
        "service:deploy_request",
        _event(principal, grid, service, "deploy"),
        stack=service.stack,
        service=service.name,
    )
    return deploy


async def pending_deploy(session: AsyncSession, service_id: str) -> ServiceDeploy | None:
    """The service's oldest deploy that has not started yet (it picks up any change), if any."""
    query = (
        select(ServiceDeploy)
        .where(
            ServiceDeploy.service_id == service_id,
            ServiceDeploy.state == WorkState.CREATED.value,
        )
        .order_by(ServiceDeploy.created_at, ServiceDeploy.id)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def request_system_deploy(
    uow: UnitOfWork, grid: Grid, service: Service, *, force: bool, reason: str
) -> tuple[ServiceDeploy, bool]:
    """A deploy the master asks for itself (certificates, ACME challenges), no user involved.

    A deploy of the service that has not started yet is reused: it builds its pods from what
    is stored when it runs, so one more would only redeploy the same thing (the one-deploy-per-
    service queue runs them one after another anyway). Returns (deploy, created).
    """
    if force:
        service.revision += 1
    pending = await pending_deploy(uow.session, service.id)
    if pending is not None:
        return pending, False
    deploy = await _new_deploy(uow, grid, service, force)
    record_event(
        uow.session,
        grid.id,
        "service:deploy_request",
        f"deploy of service {service_path(grid.name, service)} requested: {reason}",
        stack=service.stack,
        service=service.name,
    )
    return deploy, True


async def redeploy_service(
    uow: UnitOfWork, grid: Grid, service: Service, *, force: bool = False
) -> ServiceDeploy:
    """A deploy the platform asks for (continuous rescheduling); the caller records why."""
    if force:
        service.revision += 1
    return await _new_deploy(uow, grid, service, force)


async def scale_service(
    uow: UnitOfWork, principal: Principal, grid: Grid, service: Service, instances: int
) -> ServiceDeploy:
    """Set the instance count and deploy; the revision stays (no container is recreated)."""
    service.instances = instances
    deploy = await _new_deploy(uow, grid, service, False)
    record_event(
        uow.session,
        grid.id,
        "service:scale",
        f"service {service_path(grid.name, service)} scaled to {instances} instances "
        f"by {principal.user.email}",
        stack=service.stack,
        service=service.name,
    )
    return deploy


async def set_service_state(
    uow: UnitOfWork, principal: Principal, grid: Grid, service: Service, state: str
) -> None:
    """``start`` (state ``running``) or ``stop`` (``stopped``): every instance follows."""
    service.state = state
    await uow.session.execute(
        update(ServiceInstance)
        .where(ServiceInstance.service_id == service.id)
        .values(desired_state=state, updated_at=utcnow())
    )
    verb = "start" if state == "running" else "stop"
    record_event(
        uow.session,
        grid.id,
        f"service:{verb}",
        _event(principal, grid, service, verb),
        stack=service.stack,
        service=service.name,
    )
    # The worker asks each node holding an instance to re-fetch its pods.
    uow.enqueue(Job(actor="services.notify", queue=DEPLOY_QUEUE, args=(service.id,)))


async def restart_service(
    uow: UnitOfWork, principal: Principal, grid: Grid, service: Service
) -> None:
    """Queue a restart of every placed instance (the worker sends ``/service_pods/restart``)."""
    record_event(
        uow.session,
        grid.id,
        "service:restart",
        _event(principal, grid, service, "restart"),
        stack=service.stack,
        service=service.name,
    )
    uow.enqueue(Job(actor="services.restart", queue=DEPLOY_QUEUE, args=(service.id,)))


async def list_deploys(session: AsyncSession, service: Service) -> Sequence[ServiceDeploy]:
    """The service's deploys, newest first."""
    query = (
        select(ServiceDeploy)
        .where(ServiceDeploy.service_id == service.id)
        .order_by(ServiceDeploy.created_at.desc(), ServiceDeploy.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def get_deploy(session: AsyncSession, service: Service, deploy_id: str) -> ServiceDeploy:
    """One deploy of the service, or 404 ``Not found``."""
    query = select(ServiceDeploy).where(
        ServiceDeploy.service_id == service.id, ServiceDeploy.id == deploy_id
    )
    deploy = (await session.execute(query)).scalar_one_or_none()
    if deploy is None:
        raise NotFound()
    return deploy


async def list_instances(
    session: AsyncSession, service: Service
) -> list[tuple[ServiceInstance, Node | None]]:
    """The service's instances by number, each with its node (None when unplaced)."""
    query = (
        select(ServiceInstance, Node)
        .outerjoin(Node, Node.id == ServiceInstance.node_id)
        .where(ServiceInstance.service_id == service.id)
        .order_by(ServiceInstance.instance_number)
    )
    return [(row[0], row[1]) for row in await session.execute(query)]


async def get_instance(
    session: AsyncSession, service: Service, instance_id: str
) -> tuple[ServiceInstance, Node | None]:
    """One instance of the service with its node, or 404 ``Not found``."""
    for instance, node in await list_instances(session, service):
        if instance.id == instance_id:
            return instance, node
    raise NotFound()
