"""Stacks (reference §2.5): create, update with revisions, labels, the derived state.

A stack's services are ordinary service rows whose ``stack`` is the stack's name; the stack's
revisions keep each version of the service hashes as sent. A create makes the services at
once; a PUT creates the services that are new and only checks the others, which change when
the stack is deployed (:mod:`core.stack_deploy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import services
from core.auth import Principal
from core.errors import ErrorTree, Invalid, KontenaError, NotFound
from core.events import record_event
from core.service_spec import ServiceCreate, ServiceUpdate
from core.stack_spec import (
    StackCreate,
    StackFields,
    StackUpdate,
    field_errors,
    in_stack_links,
    label_errors,
    link_order,
    parent_name,
    revision_attrs,
)
from core.validation import convert
from models import Grid, Service, ServiceDeploy, Stack, StackDeploy, StackRemoval, StackRevision
from models.base import utcnow
from models.services import NULL_STACK
from models.work import WorkState

RESOURCE = "stack"  # the audit log's resource type
ACTIVE = (WorkState.CREATED.value, WorkState.ONGOING.value)


class StackNotFound(NotFound):
    """404 with an empty body, as Kontena answers for an unknown stack."""

    def __init__(self) -> None:
        KontenaError.__init__(self, {})


def stack_path(grid_name: str, name: str) -> str:
    """The public id ``grid/stack``."""
    return f"{grid_name}/{name}"


def null_stack_error(verb: str) -> Invalid:
    """Kontena's 422 for changing the implicit ``null`` stack."""
    return Invalid({"stack": f"Cannot {verb} null stack"})


def _visible(grid: Grid) -> Any:
    """Stacks of ``grid`` that no unfinished removal hides."""
    # A removal that ended without finishing (retries exhausted) shows what is left again.
    removal_active = exists().where(
        StackRemoval.stack_id == Stack.id, StackRemoval.state.in_(ACTIVE)
    )
    return (Stack.grid_id == grid.id) & (Stack.removing.is_(False) | ~removal_active)


async def find_stack(session: AsyncSession, grid: Grid, name: str) -> Stack | None:
    """The visible stack ``name`` of ``grid`` (not being removed), or None."""
    query = select(Stack).where(_visible(grid), Stack.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def get_stack(session: AsyncSession, grid: Grid, name: str) -> Stack:
    """The stack at ``grid/name`` or 404 ``{}``."""
    stack = await find_stack(session, grid, name)
    if stack is None:
        raise StackNotFound()
    return stack


async def list_stacks(session: AsyncSession, grid: Grid) -> Sequence[Stack]:
    """The grid's stacks by name (the implicit ``null`` stack is not listed)."""
    query = select(Stack).where(_visible(grid)).order_by(Stack.name)
    return (await session.execute(query)).scalars().all()


async def latest_revision(session: AsyncSession, stack: Stack) -> StackRevision | None:
    """The newest revision of ``stack``."""
    query = (
        select(StackRevision)
        .where(StackRevision.stack_id == stack.id)
        .order_by(StackRevision.revision.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_revisions(session: AsyncSession, stack: Stack) -> Sequence[StackRevision]:
    """Every revision of ``stack``, newest first."""
    query = (
        select(StackRevision)
        .where(StackRevision.stack_id == stack.id)
        .order_by(StackRevision.revision.desc())
    )
    return (await session.execute(query)).scalars().all()


async def stack_services(session: AsyncSession, grid: Grid, name: str) -> list[Service]:
    """The visible services of stack ``name``, oldest first."""
    query = (
        select(Service)
        .where(
            Service.grid_id == grid.id,
            Service.stack == name,
            Service.state != services.REMOVING,
        )
        .order_by(Service.created_at, Service.id)
    )
    return list((await session.execute(query)).scalars())


async def children(session: AsyncSession, grid: Grid, name: str) -> Sequence[Stack]:
    """Stacks installed as dependencies of stack ``name``."""
    query = select(Stack).where(_visible(grid), Stack.parent_name == name)
    return (await session.execute(query.order_by(Stack.name))).scalars().all()


def derive_state(states: Sequence[str], deploying: bool) -> str:
    """Kontena's stack state from its services' states (``models/stack.rb#state``)."""
    if all(state == "initialized" for state in states):
        return "initialized"
    if deploying:
        return "deploying"
    if all(state == "stopped" for state in states):
        return "stopped"
    if all(state == "running" for state in states):
        return "running"
    return "partially_running"


async def stack_state(session: AsyncSession, stack_id: str | None, rows: Sequence[Service]) -> str:
    """The derived state: deploying while a service deploy or the stack deploy is unfinished."""
    ids = [row.id for row in rows]
    deploying = False
    if ids:
        query = select(func.count()).where(
            ServiceDeploy.service_id.in_(ids), ServiceDeploy.state.in_(ACTIVE)
        )
        deploying = bool((await session.execute(query)).scalar_one())
    if not deploying and stack_id is not None:
        query = select(func.count()).where(
            StackDeploy.stack_id == stack_id, StackDeploy.state.in_(ACTIVE)
        )
        deploying = bool((await session.execute(query)).scalar_one())
    return derive_state([row.state for row in rows], deploying)


# --- create / update --------------------------------------------------------------------


def _parse_services(
    items: Sequence[Any], existing: Mapping[str, Service]
) -> tuple[dict[str, Any], ErrorTree]:
    """Each hash as a ServiceUpdate (existing service) or ServiceCreate; errors by service."""
    parsed: dict[str, Any] = {}
    errors: ErrorTree = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            errors[str(index)] = "isn't a hash"
            continue
        name = item.get("name")
        key = name if isinstance(name, str) else str(index)
        if key in parsed or key in errors:
            errors[key] = {"name": f"Service {key} is defined more than once"}
            continue
        try:
            if isinstance(name, str) and name in existing:
                parsed[key] = convert(item, ServiceUpdate)
            else:
                parsed[key] = convert(item, ServiceCreate)
        except Invalid as exc:
            errors[key] = exc.tree
    return parsed, errors


async def _links_from_outside(
    session: AsyncSession, grid: Grid, stack: str, targets: Sequence[Service], keep: set[str]
) -> ErrorTree:
    """Services outside the kept part of the stack that link to ``targets``: 422 per target."""
    errors: ErrorTree = {}
    for target in targets:
        users = [
            row
            for row in await services.linked_from(session, grid, target)
            if not (row.stack == stack and row.name in keep)
        ]
        if users:
            names = ", ".join(services.qualified_name(row) for row in users)
            errors[target.name] = {
                "service": f"Cannot delete service that is linked to another service ({names})"
            }
    return errors


async def _check_structure(
    session: AsyncSession,
    data: StackFields,
    name: str,
    existing: Mapping[str, Service],
) -> tuple[dict[str, Any], list[str], ErrorTree]:
    """Stack fields, service hashes and link order; raises 422 with everything found."""
    tree = field_errors(data, name)
    parsed, service_errors = _parse_services(data.services, existing)
    hashes = [item for item in data.services if isinstance(item, Mapping) and "name" in item]
    # Every named hash takes part, so a link to a service with errors is not "missing".
    order, link_errors = link_order([h for h in hashes if isinstance(h["name"], str)], name)
    for service, error in link_errors.items():
        if service not in service_errors:
            service_errors[service] = error
    if service_errors:
        tree["services"] = service_errors
    if tree:
        raise Invalid(tree)
    return parsed, order, tree


async def _apply_services(
    session: AsyncSession,
    principal: Principal,
    grid: Grid,
    stack: Stack,
    data: StackFields,
    parsed: Mapping[str, Any],
    order: Sequence[str],
    existing: Mapping[str, Service],
) -> None:
    """Create the new services in link order and check the existing ones; 422 per service."""
    errors: ErrorTree = {}
    hashes = {item["name"]: item for item in data.services if isinstance(item, Mapping)}
    failed: set[str] = set()
    for name in order:
        if any(target in failed for target in in_stack_links(hashes[name], stack.name)):
            failed.add(name)  # its link target failed: that error is the one to fix
            continue
        try:
            if name in existing:
                await services.check_update(session, grid, existing[name], parsed[name])
            else:
                await services.create_service(
                    session, principal, grid, parsed[name], stack=stack.name
                )
        except Invalid as exc:
            errors[name] = exc.tree
            failed.add(name)
    if errors:
        raise Invalid({"services": errors})


async def create_stack(
    session: AsyncSession, principal: Principal, grid: Grid, data: StackCreate
) -> Stack:
    """Create the stack, its revision 1 and its services (state ``initialized``)."""
    taken = data.name == NULL_STACK or await _name_taken(session, grid, data.name)
    try:
        parsed, order, _ = await _check_structure(session, data, data.name, {})
    except Invalid as exc:
        if taken and isinstance(exc.tree, dict):
            exc.tree["name"] = f"{data.name} already exists"
        raise
    if taken:
        raise Invalid({"name": f"{data.name} already exists"})
    stack = Stack(
        grid_id=grid.id,
        name=data.name,
        parent_name=parent_name(data),
        labels=list(data.labels) if isinstance(data.labels, list) else [],
    )
    session.add(stack)
    await session.flush()  # the stack's id, for its revision
    session.add(StackRevision(stack_id=stack.id, revision=1, **revision_attrs(data)))
    await _apply_services(session, principal, grid, stack, data, parsed, order, {})
    for row in await stack_services(session, grid, stack.name):
        row.stack_revision = 1
    record_event(
        session,
        grid.id,
        "stack:create",
        f"stack {stack_path(grid.name, stack.name)} created by {principal.user.email}",
        stack=stack.name,
    )
    return stack


async def _name_taken(session: AsyncSession, grid: Grid, name: str) -> bool:
    # A stack being removed still holds its name (its services still exist).
    query = select(Stack.id).where(Stack.grid_id == grid.id, Stack.name == name)
    return (await session.execute(query)).first() is not None


async def update_stack(
    session: AsyncSession, principal: Principal, grid: Grid, stack: Stack, data: StackUpdate
) -> StackRevision:
    """PUT: a new revision when a revision attribute changed; new services are created now.

    Services that stay are only checked here and change at deploy; services that left the
    stack must be deletable (nothing outside the stack links to them) and go at deploy.
    """
    rows = await stack_services(session, grid, stack.name)
    existing = {row.name: row for row in rows}
    parsed, order, _ = await _check_structure(session, data, stack.name, existing)
    dropped = [row for row in rows if row.name not in parsed]
    if errors := await _links_from_outside(session, grid, stack.name, dropped, set(parsed)):
        raise Invalid({"services": errors})
    await _apply_services(session, principal, grid, stack, data, parsed, order, existing)
    latest = await latest_revision(session, stack)
    attrs = revision_attrs(data)
    if latest is None or any(getattr(latest, key) != value for key, value in attrs.items()):
        number = (latest.revision if latest else 0) + 1
        latest = StackRevision(stack_id=stack.id, revision=number, **attrs)
        session.add(latest)
    if isinstance(data.labels, list):
        stack.labels = list(data.labels)
    stack.parent_name = parent_name(data)
    stack.updated_at = utcnow()
    await session.flush()
    record_event(
        session,
        grid.id,
        "stack:update",
        f"stack {stack_path(grid.name, stack.name)} updated by {principal.user.email}",
        stack=stack.name,
    )
    return latest


def set_labels(stack: Stack, labels: Sequence[str]) -> None:
    """PATCH: replace the labels (``[]`` clears them)."""
    if errors := label_errors(labels):
        raise Invalid(errors)
    stack.labels = list(labels)
    stack.updated_at = utcnow()
