"""Services: Kontena's create/update/delete rules, paths, listing and the secret hooks.

A service's columns hold what placement and deploys query (name, image, state, instances,
stateful, strategy, revision); every other attribute lives in ``Service.spec`` as
:func:`core.service_spec.default_spec` describes it. ``spec["links"]`` items are
``{"name": "stack/svc", "alias": …, "service_id": …}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec import UNSET
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import secrets as secret_store
from core.auth import Principal
from core.errors import ErrorTree, Invalid, NotFound
from core.events import record_event
from core.jobs import Job
from core.service_spec import (
    FQDN_MAX,
    LinkSpec,
    ServiceCreate,
    ServiceFields,
    ServiceUpdate,
    apply_fields,
    default_spec,
    field_errors,
    given_instances,
    parse_volume,
)
from core.unit_of_work import UnitOfWork
from models import Grid, GridSecret, Service, ServiceInstance, Stack
from models.base import utcnow
from models.services import NULL_STACK

RESOURCE = "grid_service"  # the audit log's resource type, as Kontena named the model
# A deleted service keeps its row while the worker removes its containers; nobody sees it.
REMOVING = "removing"
TAKEN: ErrorTree = {"name": "is already taken"}


@dataclass(frozen=True)
class InstanceCounts:
    """``instance_counts`` and the ``health_status`` tallies of the service JSON."""

    total: int = 0
    running: int = 0
    healthy: int = 0
    unhealthy: int = 0


def service_path(grid_name: str, service: Service) -> str:
    """The public id ``grid/stack/name`` (stack ``null`` for stack-less services)."""
    return f"{grid_name}/{service.stack}/{service.name}"


def stack_domain(grid_name: str, stack: str) -> str:
    """``<grid>.kontena.local``, or ``<stack>.<grid>.kontena.local`` inside a stack."""
    base = f"{grid_name}.kontena.local"
    return base if stack == NULL_STACK else f"{stack}.{base}"


def qualified_name(service: Service) -> str:
    """``svc`` for stack-less services, ``stack/svc`` otherwise (link names)."""
    return service.name if service.stack == NULL_STACK else f"{service.stack}/{service.name}"


def _visible(grid: Grid) -> Any:
    return (Service.grid_id == grid.id) & (Service.state != REMOVING)


async def stack_exists(session: AsyncSession, grid: Grid, stack: str) -> bool:
    """The ``null`` stack always exists; others while their stack row (or a service) does."""
    if stack == NULL_STACK:
        return True
    row = select(Stack.id).where(
        Stack.grid_id == grid.id, Stack.name == stack, Stack.removing.is_(False)
    )
    if (await session.execute(row.limit(1))).first() is not None:
        return True
    query = select(Service.id).where(_visible(grid), Service.stack == stack).limit(1)
    return (await session.execute(query)).first() is not None


async def find_service(session: AsyncSession, grid: Grid, stack: str, name: str) -> Service | None:
    """The visible service ``stack/name`` of ``grid``, or None."""
    query = select(Service).where(_visible(grid), Service.stack == stack, Service.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def get_service(session: AsyncSession, grid: Grid, stack: str, name: str) -> Service:
    """The service at ``grid/stack/name``, or 404 ``Not found``."""
    service = await find_service(session, grid, stack, name)
    if service is None:
        raise NotFound()
    return service


async def list_services(
    session: AsyncSession, grid: Grid, stack: str | None = None
) -> Sequence[Service]:
    """The grid's services, newest first; an unknown ``stack`` is 404 ``Stack not found``."""
    query = select(Service).where(_visible(grid)).order_by(Service.created_at.desc())
    if stack is not None:
        if not await stack_exists(session, grid, stack):
            raise NotFound("Stack not found")
        query = query.where(Service.stack == stack)
    return (await session.execute(query)).scalars().all()


async def instance_counts(
    session: AsyncSession, service_ids: Sequence[str]
) -> dict[str, InstanceCounts]:
    """Total and running instances per service, in one query."""
    if not service_ids:
        return {}

    def tally(column: Any, value: str) -> Any:
        return func.sum(case((column == value, 1), else_=0))

    query = (
        select(
            ServiceInstance.service_id,
            func.count(),
            tally(ServiceInstance.state, "running"),
            tally(ServiceInstance.health_status, "healthy"),
            tally(ServiceInstance.health_status, "unhealthy"),
        )
        .where(ServiceInstance.service_id.in_(list(service_ids)))
        .group_by(ServiceInstance.service_id)
    )
    rows = await session.execute(query)
    return {
        row[0]: InstanceCounts(
            total=row[1],
            running=int(row[2] or 0),
            healthy=int(row[3] or 0),
            unhealthy=int(row[4] or 0),
        )
        for row in rows
    }


def _fqdn_error(grid: Grid, stack: str, name: str, instances: int) -> str | None:
    fqdn = f"{name}-{instances}.{stack_domain(grid.name, stack)}"
    if len(fqdn) > FQDN_MAX:
        return f"Total grid service name length {len(fqdn)} is over limit ({FQDN_MAX}): {fqdn}"
    return None


async def _resolve_links(
    session: AsyncSession, grid: Grid, stack: str, links: Sequence[LinkSpec]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Links as stored, and Kontena's message for each one that points nowhere."""
    resolved: list[dict[str, Any]] = []
    errors: list[str] = []
    for link in links:
        name = link.name if "/" in link.name else f"{stack}/{link.name}"
        parts = name.split("/")
        target_stack, target_name = (parts[-2], parts[-1])
        if not await stack_exists(session, grid, target_stack):
            errors.append(f"Link {name} points to non-existing stack")
            continue
        target = await find_service(session, grid, target_stack, target_name)
        if target is None:
            errors.append(f"Service {name} does not exist")
            continue
        resolved.append({"name": name, "alias": link.alias, "service_id": target.id})
    return resolved, errors


async def _missing_secrets(session: AsyncSession, grid: Grid, data: ServiceFields) -> list[str]:
    wanted = [item.secret for item in data.secrets or []] if data.secrets is not UNSET else []
    if not wanted:
        return []
    query = select(GridSecret.name).where(
        GridSecret.grid_id == grid.id, GridSecret.name.in_(set(wanted))
    )
    found = set((await session.execute(query)).scalars())
    return [f"Secret {name} does not exist" for name in wanted if name not in found]


async def _checked_spec(
    session: AsyncSession,
    grid: Grid,
    stack: str,
    name: str,
    stateful: bool,
    spec: dict[str, Any],
    data: ServiceFields,
    instances: int,
    *,
    existing: bool,
) -> dict[str, Any]:
    """The new spec after every rule of §2.4.1 passed; otherwise 422 naming each bad field."""
    tree = field_errors(data)
    if message := _fqdn_error(grid, stack, name, instances):
        tree["name"] = message
    if stateful and data.volumes_from:
        tree["volumes_from"] = "Cannot combine stateful & volumes_from"
    links: list[dict[str, Any]] | None = None
    if data.links is not UNSET:
        links, link_errors = await _resolve_links(session, grid, stack, data.links or [])
        if link_errors:
            tree["links"] = link_errors
    if missing := await _missing_secrets(session, grid, data):
        tree["secrets"] = missing
    if tree:
        raise Invalid(tree)
    new = apply_fields(spec, data)
    stateful_update = existing and stateful and bool(data.volumes)
    old_volumes = spec.get("volumes") or []
    if stateful_update and (errors := _stateful_volume_errors(old_volumes, new["volumes"])):
        raise Invalid(errors)
    if links is not None:
        new["links"] = links
    return new


def _stateful_volume_errors(old: Sequence[str], new: Sequence[str]) -> ErrorTree:
    """A stateful service keeps its data container: no new anonymous volumes later."""
    existing = {parse_volume(v)["path"] for v in old if _anonymous(v)}
    errors = [
        f"Adding a new anonymous volume ({parse_volume(v)['path']}) to a stateful service "
        "is not supported"
        for v in new
        if _anonymous(v) and parse_volume(v)["path"] not in existing
    ]
    return {"volumes": errors} if errors else {}


def _anonymous(volume: str) -> bool:
    parsed = parse_volume(volume)
    return not parsed["bind_mount"] and not parsed["volume"]


async def create_service(
    session: AsyncSession,
    principal: Principal,
    grid: Grid,
    data: ServiceCreate,
    *,
    stack: str = NULL_STACK,
) -> Service:
    """Create a service in ``stack`` (stack-less by default); 422 on any broken rule."""
    instances = given_instances(data)
    count = 1 if instances is None else instances
    spec = await _checked_spec(
        session, grid, stack, data.name, data.stateful, {}, data, count, existing=False
    )
    base = default_spec()
    base.update(spec)
    if await _path_taken(session, grid, stack, data.name):
        raise Invalid(dict(TAKEN))
    service = Service(
        grid_id=grid.id,
        stack=stack,
        name=data.name,
        image=data.image,
        state="initialized",
        instances=count,
        stateful=data.stateful,
        strategy=data.strategy or "ha",
        revision=1,
        spec=base,
    )
    session.add(service)
    await session.flush()
    record_event(
        session,
        grid.id,
        "service:create",
        f"service {service_path(grid.name, service)} created by {principal.user.email}",
        stack=stack,
        service=service.name,
    )
    return service


async def _path_taken(session: AsyncSession, grid: Grid, stack: str, name: str) -> bool:
    # Includes services being removed: their rows still hold the name.
    query = select(Service.id).where(
        Service.grid_id == grid.id, Service.stack == stack, Service.name == name
    )
    return (await session.execute(query)).first() is not None


async def update_service(
    session: AsyncSession, principal: Principal, grid: Grid, service: Service, data: ServiceUpdate
) -> Service:
    """PUT semantics (§2.4.2): given keys change; the revision grows when anything changed."""
    instances = given_instances(data)
    count = service.instances if instances is None else instances
    spec = await _checked_spec(
        session,
        grid,
        service.stack,
        service.name,
        service.stateful,
        service.spec,
        data,
        count,
        existing=True,
    )
    before = _comparable(service)
    if isinstance(data.image, str):
        service.image = data.image
    if isinstance(data.strategy, str):
        service.strategy = data.strategy
    elif data.strategy is None:
        service.strategy = "ha"
    if instances is not None:
        service.instances = instances
    service.spec = spec
    if data.force or _comparable(service) != before:
        service.revision += 1
        await session.flush()
        record_event(
            session,
            grid.id,
            "service:update",
            f"service {service_path(grid.name, service)} updated by {principal.user.email}",
            stack=service.stack,
            service=service.name,
        )
    return service


async def check_update(
    session: AsyncSession, grid: Grid, service: Service, data: ServiceUpdate
) -> None:
    """Every rule :func:`update_service` applies, changing nothing (a stack PUT checks early)."""
    instances = given_instances(data)
    count = service.instances if instances is None else instances
    await _checked_spec(
        session,
        grid,
        service.stack,
        service.name,
        service.stateful,
        service.spec,
        data,
        count,
        existing=True,
    )


def _comparable(service: Service) -> tuple[Any, ...]:
    return (service.image, service.strategy, service.instances, dict(service.spec))


async def linked_from(session: AsyncSession, grid: Grid, service: Service) -> list[Service]:
    """Other visible services of the grid that link to ``service``."""
    rows = (await session.execute(select(Service).where(_visible(grid)))).scalars()
    return [
        row
        for row in rows
        if row.id != service.id
        and any(link.get("service_id") == service.id for link in row.spec.get("links") or [])
    ]


async def delete_service(
    uow: UnitOfWork, principal: Principal, grid: Grid, service: Service
) -> None:
    """Hide the service, ask every instance to terminate and queue the removal job.

    The ``services.remove`` actor deletes the row once the agents removed the containers.
    """
    session = uow.session
    users = await linked_from(session, grid, service)
    if users:
        names = ", ".join(row.name for row in users)
        raise Invalid(
            {"service": f"Cannot delete service that is linked to another service ({names})"}
        )
    service.state = REMOVING
    for instance in await _instances(session, service):
        instance.desired_state = "terminated"
    await session.flush()
    record_event(
        session,
        grid.id,
        "service:remove_request",
        f"removal of service {service_path(grid.name, service)} requested by "
        f"{principal.user.email}",
        stack=service.stack,
        service=service.name,
    )
    uow.enqueue(removal_job(service.id))


def removal_job(service_id: str) -> Job:
    """The job that finishes removing a service (idempotent: a gone service is a no-op)."""
    return Job(actor="services.remove", queue="deploys", args=(service_id,))


async def stalled_removals(session: AsyncSession, older_than: datetime) -> list[Job]:
    """Removal jobs to send again: services still ``removing`` since before ``older_than``.

    A removal has no work row of its own, so the service's state and ``updated_at`` stand in
    for it; touching ``updated_at`` here spaces the re-sends out.
    """
    rows = (
        await session.execute(
            select(Service).where(Service.state == REMOVING, Service.updated_at < older_than)
        )
    ).scalars()
    jobs = []
    for service in rows:
        service.updated_at = utcnow()
        jobs.append(removal_job(service.id))
    return jobs


async def _instances(session: AsyncSession, service: Service) -> Sequence[ServiceInstance]:
    query = select(ServiceInstance).where(ServiceInstance.service_id == service.id)
    return (await session.execute(query)).scalars().all()


async def count_services(session: AsyncSession, grid: Grid) -> int:
    """How many visible services ``grid`` has."""
    query = select(func.count()).select_from(Service).where(_visible(grid))
    return int((await session.execute(query)).scalar_one())


# --- secrets: which services use a secret, and a new value means a new revision -------------


def _uses(service: Service, secret: str) -> bool:
    return any(item.get("secret") == secret for item in service.spec.get("secrets") or [])


async def secret_consumers(
    session: AsyncSession, grid: Grid
) -> Mapping[str, Sequence[secret_store.ServiceRef]]:
    """{secret name: services using it} for the secret JSON and the delete check."""
    found: dict[str, list[secret_store.ServiceRef]] = {}
    query = select(Service).where(_visible(grid)).order_by(Service.stack, Service.name)
    for service in (await session.execute(query)).scalars():
        names = {item.get("secret") for item in service.spec.get("secrets") or []}
        for name in sorted(str(n) for n in names if n):
            ref = secret_store.ServiceRef(id=service_path(grid.name, service), name=service.name)
            found.setdefault(name, []).append(ref)
    return found


async def secret_changed(session: AsyncSession, grid: Grid, name: str) -> None:
    """Bump the revision of every service using secret ``name`` (its value changed)."""
    query = select(Service).where(_visible(grid))
    for service in (await session.execute(query)).scalars():
        if _uses(service, name):
            service.revision += 1
    await session.flush()


if secret_consumers not in secret_store.CONSUMER_FINDERS:
    secret_store.CONSUMER_FINDERS.append(secret_consumers)
if secret_changed not in secret_store.CHANGE_HOOKS:
    secret_store.CHANGE_HOOKS.append(secret_changed)
