"""Wire shape of container log lines (reference §2.12)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from models import ContainerLog


class NamedRef(msgspec.Struct):
    """A related object: Kontena path id and name."""

    id: str
    name: str


class NodeRef(msgspec.Struct):
    """The node the container ran on."""

    name: str


class ContainerLogEntry(msgspec.Struct):
    """One line; ``id`` is the cursor clients pass back as ``from``."""

    id: str
    name: str
    container_id: str
    service: NamedRef
    stack: NamedRef
    grid: NamedRef
    node: NodeRef
    instance_number: int
    created_at: datetime
    type: str
    data: str


class ContainerLogList(msgspec.Struct):
    """``GET …/container_logs``."""

    logs: list[ContainerLogEntry]


def container_log_view(grid_name: str, entry: ContainerLog) -> ContainerLogEntry:
    """Render one line of the grid named ``grid_name``."""
    stack_id = f"{grid_name}/{entry.stack}"
    return ContainerLogEntry(
        id=str(entry.id),
        name=entry.name,
        container_id=entry.container_id,
        service=NamedRef(id=f"{stack_id}/{entry.service}", name=entry.service),
        stack=NamedRef(id=stack_id, name=entry.stack),
        grid=NamedRef(id=grid_name, name=grid_name),
        node=NodeRef(name=entry.node),
        instance_number=entry.instance_number,
        created_at=entry.created_at,
        type=entry.type,
        data=entry.data,
    )
