"""How services use grid volumes: resolving ``name:/path`` mounts, Docker names, volume instances.

Reference §5.3. A service names a volume in its ``volumes`` (``myvol:/data[:flags]``); the name is
a grid volume (for a stack service: the stack's ``volumes`` entry, whose ``external`` names the
grid volume). Each scope maps to its own Docker volume name on the node, and the master records
every Docker volume it asked a node to hold (a volume instance) so that placement can keep an
instance next to its data and a deleted volume can be removed from the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.protocol import VOLUME_LABEL_GRID, VOLUME_LABEL_ID, VOLUME_LABEL_SCOPE
from core.service_spec import parse_volume
from models import Node, Service, Stack, StackRevision, Volume, VolumeInstance
from models.services import NULL_STACK


@dataclass(frozen=True)
class VolumeRef:
    """A grid volume as a pod needs it."""

    id: str  # row id
    name: str  # the grid volume's name (not the stack-local alias)
    scope: str
    driver: str
    driver_opts: Mapping[str, str]


def named_volumes(spec: Mapping[str, Any]) -> list[str]:
    """The volume names (``myvol`` of ``myvol:/data``) a service spec mounts, in order."""
    names: list[str] = []
    for text in spec.get("volumes") or []:
        try:
            name = parse_volume(str(text))["volume"]
        except ValueError:
            continue
        if name and name not in names:
            names.append(name)
    return names


def docker_volume_name(ref: VolumeRef, service: Service, instance_number: int) -> str:
    """The Docker volume of one instance: ``stack.svc.vol-n``, ``stack.vol`` or ``vol`` by scope.

    Stack-less services drop the ``null.`` prefix of the instance scope (Kontena's
    ``name_with_stack``); a stack-scoped volume of a stack-less service is ``null.<vol>``.
    """
    if ref.scope == "instance":
        owner = service.name if service.stack == NULL_STACK else f"{service.stack}.{service.name}"
        return f"{owner}.{ref.name}-{instance_number}"
    if ref.scope == "stack":
        return f"{service.stack}.{ref.name}"
    return ref.name


def driver_for_node(driver: str, node: Node | None) -> str:
    """``driver:version`` when the node reports a version for that plugin, else ``driver``."""
    for reported in (node.volume_drivers or []) if node is not None else []:
        if (
            isinstance(reported, dict)
            and reported.get("name") == driver
            and reported.get("version")
        ):
            return f"{driver}:{reported['version']}"
    return driver


def volume_labels(grid_name: str, ref: VolumeRef) -> dict[str, str]:
    """The labels that mark a Docker volume as this grid volume's."""
    return {
        VOLUME_LABEL_ID: f"{grid_name}/{ref.name}",
        VOLUME_LABEL_GRID: grid_name,
        VOLUME_LABEL_SCOPE: ref.scope,
    }


def pod_volumes(
    grid_name: str,
    service: Service,
    instance_number: int,
    node: Node | None,
    refs: Mapping[str, VolumeRef],
) -> list[dict[str, Any]]:
    """The pod's mounts: bind mounts, resolved named volumes, anonymous volumes.

    A name that does not resolve to a grid volume becomes an anonymous volume, as on Kontena.
    """
    mounts: list[dict[str, Any]] = []
    for text in (service.spec or {}).get("volumes") or []:
        try:
            parsed = parse_volume(str(text))
        except ValueError:
            continue  # validated on create/update; an old bad value is skipped, not fatal
        flags = ",".join(parsed["flags"]) or None
        ref = refs.get(parsed["volume"]) if parsed["volume"] else None
        if parsed["bind_mount"]:
            mounts.append(
                {"bind_mount": parsed["bind_mount"], "path": parsed["path"], "flags": flags}
            )
        elif ref is not None:
            mounts.append(
                {
                    "name": docker_volume_name(ref, service, instance_number),
                    "path": parsed["path"],
                    "flags": flags,
                    "driver": driver_for_node(ref.driver, node),
                    "driver_opts": dict(ref.driver_opts),
                    "labels": volume_labels(grid_name, ref),
                }
            )
        else:
            mounts.append({"path": parsed["path"]})
    return mounts


def _ref(volume: Volume) -> VolumeRef:
    opts = {str(k): str(v) for k, v in (volume.driver_opts or {}).items()}
    return VolumeRef(volume.id, volume.name, volume.scope, volume.driver, opts)


async def find_volume(session: AsyncSession, grid_id: str, name: str) -> Volume | None:
    """The grid volume ``name``, or None (stacks check their ``external`` volumes with this)."""
    query = select(Volume).where(Volume.grid_id == grid_id, Volume.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def stack_volume_externals(session: AsyncSession, service: Service) -> dict[str, str]:
    """A stack service's local volume names → the grid volumes they stand for.

    The stack's latest revision maps ``volumes: [{name, external}]`` (``external`` a grid
    volume name, or ``true`` for the same name); a name it does not map stands for the grid
    volume of the same name, as it does for stack-less services.
    """
    query = (
        select(StackRevision.volumes)
        .join(Stack, Stack.id == StackRevision.stack_id)
        .where(Stack.grid_id == service.grid_id, Stack.name == service.stack)
        .order_by(StackRevision.revision.desc())
        .limit(1)
    )
    volumes = (await session.execute(query)).scalar_one_or_none() or []
    externals: dict[str, str] = {}
    for entry in volumes:
        name, external = entry.get("name"), entry.get("external")
        if isinstance(name, str) and external:
            externals[name] = external if isinstance(external, str) else name
    return externals


async def service_volume_refs(session: AsyncSession, service: Service) -> dict[str, VolumeRef]:
    """The service's named volumes that resolve to grid volumes, by the name the spec uses.

    A name that resolves to nothing is left out: the mount becomes anonymous (Kontena's rule).
    """
    names = named_volumes(service.spec or {})
    if not names:
        return {}
    externals = (
        {} if service.stack == NULL_STACK else await stack_volume_externals(session, service)
    )
    wanted = {name: externals.get(name, name) for name in names}
    rows = (
        await session.execute(
            select(Volume).where(
                Volume.grid_id == service.grid_id, Volume.name.in_(set(wanted.values()))
            )
        )
    ).scalars()
    by_name = {row.name: _ref(row) for row in rows}
    return {local: by_name[grid] for local, grid in wanted.items() if grid in by_name}


async def services_using(
    session: AsyncSession, grid_id: str, volume_name: str
) -> Sequence[Service]:
    """The grid's services that mount the grid volume ``volume_name``."""
    services = (
        (
            await session.execute(
                select(Service)
                .where(Service.grid_id == grid_id)
                .order_by(Service.stack, Service.name)
            )
        )
        .scalars()
        .all()
    )
    using = []
    for service in services:
        names = named_volumes(service.spec or {})
        if not names:
            continue
        externals = (
            {} if service.stack == NULL_STACK else await stack_volume_externals(session, service)
        )
        if volume_name in {externals.get(name, name) for name in names}:
            using.append(service)
    return using


async def record_volume_instances(
    session: AsyncSession, node: Node, instances: Iterable[tuple[str, str]]
) -> None:
    """Remember that ``node`` was asked to hold these ``(volume_id, docker name)`` volumes."""
    wanted = dict((name, volume_id) for volume_id, name in instances)
    if not wanted:
        return
    known = set(
        (
            await session.execute(
                select(VolumeInstance.name).where(
                    VolumeInstance.node_id == node.id, VolumeInstance.name.in_(set(wanted))
                )
            )
        ).scalars()
    )
    for name, volume_id in wanted.items():
        if name in known:
            continue
        try:
            async with session.begin_nested():
                session.add(VolumeInstance(volume_id=volume_id, node_id=node.id, name=name))
        except IntegrityError:
            pass  # a concurrent list of the same node recorded it first


async def record_pod_volumes(
    session: AsyncSession, node: Node, pods: Iterable[Mapping[str, Any]]
) -> None:
    """Record the named volumes of the pods a node was just sent (it creates them if missing).

    Recorded before the agent sees the pods, so a volume on a node always has its row: the
    volume-instance filter can keep the instance there and a volume delete finds the node.
    """
    names: dict[str, str] = {}  # docker name → grid volume name
    for pod in pods:
        if pod.get("desired_state") == "terminated":
            continue
        for mount in pod.get("volumes") or []:
            volume_id = (mount.get("labels") or {}).get(VOLUME_LABEL_ID)
            if mount.get("name") and volume_id:
                names[mount["name"]] = str(volume_id).partition("/")[2]
    if not names:
        return
    rows = await session.execute(
        select(Volume.name, Volume.id).where(
            Volume.grid_id == node.grid_id, Volume.name.in_(set(names.values()))
        )
    )
    ids = {name: volume_id for name, volume_id in rows}
    await record_volume_instances(
        session, node, [(ids[grid], name) for name, grid in names.items() if grid in ids]
    )


async def node_volume_instances(
    session: AsyncSession, node_ids: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """The Docker volume names recorded on each node."""
    ids = list(node_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(VolumeInstance.node_id, VolumeInstance.name).where(VolumeInstance.node_id.in_(ids))
    )
    found: dict[str, list[str]] = {}
    for node_id, name in rows:
        found.setdefault(node_id, []).append(name)
    return {node_id: tuple(sorted(names)) for node_id, names in found.items()}
