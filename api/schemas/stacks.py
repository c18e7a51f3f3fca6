"""Wire shapes of stacks, stack revisions and stack deploys (reference §2.13)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from api.schemas.audit_logs import timestamp
from api.schemas.services import DeployView, ServiceView, deploy_view
from core.stacks import stack_path
from models import Grid, Service, ServiceDeploy, Stack, StackDeploy, StackRevision


class StackRef(msgspec.Struct):
    """``parent``/``children`` items; a parent that no longer exists has a null id."""

    id: str | None
    name: str


class StackView(msgspec.Struct):
    """The stack JSON: the stack, its latest revision's attributes and its services."""

    id: str
    name: str
    state: str
    created_at: str
    updated_at: str
    stack: str | None
    registry: str | None
    version: str | None
    revision: int | None
    expose: str | None
    source: str | None
    variables: dict[str, Any]
    labels: list[str]
    services: list[ServiceView]
    volumes: list[dict[str, Any]]
    metadata: dict[str, Any]
    parent: StackRef | None
    children: list[StackRef]


class StackList(msgspec.Struct):
    """``{"stacks": [...]}``."""

    stacks: list[StackView]


class StackDeployView(msgspec.Struct):
    """A stack deploy with the service deploys it started, in the order they ran."""

    id: str
    stack_id: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    state: str
    reason: str | None
    revision: int
    service_deploys: list[DeployView]


class StackDeployList(msgspec.Struct):
    """``{"deploys": [...]}``."""

    deploys: list[StackDeployView]


class RevisionView(msgspec.Struct):
    """One stored revision of a stack."""

    revision: int
    created_at: str
    stack: str
    version: str
    registry: str | None
    expose: str | None
    source: str
    variables: dict[str, Any]
    metadata: dict[str, Any]
    services: list[Any]
    volumes: list[dict[str, Any]]


class RevisionList(msgspec.Struct):
    """``{"revisions": [...]}``, newest first."""

    revisions: list[RevisionView]


def _time(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None


def stack_view(
    grid: Grid,
    stack: Stack,
    revision: StackRevision | None,
    state: str,
    services: list[ServiceView],
    parent_exists: bool,
    children: Sequence[Stack],
) -> StackView:
    """Render a stack; ``updated_at`` is the time of its latest revision."""
    parent = None
    if stack.parent_name:
        parent = StackRef(
            id=stack_path(grid.name, stack.parent_name) if parent_exists else None,
            name=stack.parent_name,
        )
    updated = revision.created_at if revision is not None else stack.updated_at
    return StackView(
        id=stack_path(grid.name, stack.name),
        name=stack.name,
        state=state,
        created_at=timestamp(stack.created_at),
        updated_at=timestamp(max(updated, stack.updated_at)),
        stack=revision.stack_name if revision else None,
        registry=revision.registry_url if revision else None,
        version=revision.version if revision else None,
        revision=revision.revision if revision else None,
        expose=revision.expose if revision else None,
        source=revision.source if revision else None,
        variables=dict(revision.variables) if revision else {},
        labels=list(stack.labels or []),
        services=services,
        volumes=list(revision.volumes) if revision else [],
        metadata=dict(revision.metadata_) if revision else {},
        parent=parent,
        children=[StackRef(id=stack_path(grid.name, c.name), name=c.name) for c in children],
    )


def stack_deploy_view(
    grid: Grid,
    stack_name: str,
    deploy: StackDeploy,
    found: Mapping[str, tuple[ServiceDeploy, Service]],
) -> StackDeployView:
    """Render a stack deploy; ``found`` maps service deploy ids to (deploy, service)."""
    rendered = [
        deploy_view(grid, service, row)
        for item in deploy.service_deploys or []
        if (pair := found.get(str(item["deploy_id"]))) is not None
        for row, service in [pair]
    ]
    return StackDeployView(
        id=deploy.id,
        stack_id=stack_path(grid.name, stack_name),
        created_at=timestamp(deploy.created_at),
        started_at=_time(deploy.started_at),
        finished_at=_time(deploy.finished_at),
        state=deploy.state,
        reason=deploy.reason,
        revision=deploy.revision,
        service_deploys=rendered,
    )


def revision_view(row: StackRevision) -> RevisionView:
    """Render one revision."""
    return RevisionView(
        revision=row.revision,
        created_at=timestamp(row.created_at),
        stack=row.stack_name,
        version=row.version,
        registry=row.registry_url,
        expose=row.expose,
        source=row.source,
        variables=dict(row.variables),
        metadata=dict(row.metadata_),
        services=list(row.services),
        volumes=list(row.volumes),
    )
