"""What a client sends for a stack (reference §2.5, §8) and the checks that need no database.

The services of a stack arrive as the hashes a service create would take; they are stored
as sent in the stack's revision and validated with the service rules by :mod:`core.stacks`.
Links inside the stack decide the order services are created and deployed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.errors import ErrorTree

# Ruby's \w is ASCII-only; the look-ahead forbids a leading "-" (mutations/stacks/common.rb).
STACK_NAME_PATTERN = r"\A(?!-)[A-Za-z0-9_-]+\Z"
STACK_NAME_MAX = 64
LABEL_PATTERN = re.compile(r"\A[a-z0-9.-]+=", re.DOTALL)


class StackVolume(msgspec.Struct):
    """A volume of the stack: ``external`` names the grid volume it stands for."""

    name: Annotated[str, Meta(min_length=1)]
    external: str | bool | None = None


class ParentRef(msgspec.Struct):
    """``parent: {name}``: the stack this one was installed as a dependency of."""

    name: Annotated[str, Meta(min_length=1)]


class StackFields(msgspec.Struct, kw_only=True):
    """The attributes both create and update take; ``name`` is ignored on update."""

    stack: Annotated[str, Meta(min_length=1)]
    version: str
    source: str
    services: list[Any]
    expose: str | None = None
    registry: str | None = None
    variables: dict[str, Any] | None = None
    labels: list[str] | UnsetType | None = UNSET
    metadata: dict[str, Any] | None = None
    volumes: list[StackVolume] | None = None
    parent: ParentRef | None = None
    parent_name: str | None = None  # the legacy spelling of parent.name


class StackCreate(StackFields, kw_only=True):
    """``POST /v1/grids/:grid/stacks``."""

    name: Annotated[str, Meta(min_length=1, max_length=STACK_NAME_MAX, pattern=STACK_NAME_PATTERN)]


class StackUpdate(StackFields, kw_only=True):
    """``PUT /v1/stacks/:grid/:stack``: every revision attribute again."""

    name: str | None = None


class StackLabels(msgspec.Struct):
    """``PATCH /v1/stacks/:grid/:stack``: only the labels (``[]`` clears them)."""

    labels: list[str]


def parent_name(data: StackFields) -> str | None:
    """``parent.name``, or the legacy ``parent_name``."""
    return data.parent.name if data.parent is not None else data.parent_name


def revision_attrs(data: StackFields) -> dict[str, Any]:
    """The attributes a revision stores, as compared to tell whether anything changed."""
    return {
        "stack_name": data.stack,
        "version": data.version,
        "registry_url": data.registry,
        "source": data.source,
        "expose": data.expose,
        "variables": dict(data.variables or {}),
        "metadata_": dict(data.metadata or {}),
        "services": list(data.services),
        "volumes": [msgspec.to_builtins(v) for v in data.volumes or []],
    }


def field_errors(data: StackFields, name: str) -> ErrorTree:
    """Checks of the stack's own attributes: services present, expose, labels, volumes, parent."""
    tree: ErrorTree = {}
    if not data.services:
        tree["services"] = "stack does not specify any services"
    names = service_names(data.services)
    if data.expose is not None and data.expose not in names:
        tree["expose"] = f"{data.expose} is not defined in the services array"
    if isinstance(data.labels, list):
        tree.update(label_errors(data.labels))
    volume_errors: ErrorTree = {}
    for volume in data.volumes or []:
        if not volume.external:
            volume_errors[volume.name] = "Only external volumes supported"
    if volume_errors:
        tree["volumes"] = volume_errors
    if parent_name(data) == name:
        tree["parent"] = "Stack cannot be its own parent"
    return tree


def label_errors(labels: Sequence[str]) -> ErrorTree:
    """``{"labels": [...]}`` for labels that are not ``key=value`` with a lowercase key."""
    bad = [label for label in labels if not LABEL_PATTERN.match(label)]
    return {"labels": [f"Label {label} isn't in the right format" for label in bad]} if bad else {}


def service_names(services: Sequence[Any]) -> list[str]:
    """The ``name`` of every service hash that has a string name."""
    return [
        item["name"]
        for item in services
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    ]


def in_stack_links(service: Mapping[str, Any], stack: str) -> list[str]:
    """Names of the services of the same stack that ``service`` links to.

    ``svc`` and ``<this stack>/svc`` are in the stack; other ``stack/svc`` links are not
    used for ordering (they must exist already).
    """
    found: list[str] = []
    links = service.get("links")
    for link in links if isinstance(links, list) else []:
        target = link.get("name") if isinstance(link, Mapping) else None
        if not isinstance(target, str):
            continue
        owner, _, svc = target.rpartition("/")
        if owner in ("", stack):
            found.append(svc)
    return found


def link_order(services: Sequence[Mapping[str, Any]], stack: str) -> tuple[list[str], ErrorTree]:
    """Service names with every link target before the service linking to it.

    Returns the order and ``{service: {"links": message}}`` for missing or cyclic links.
    Services keep the order they were sent in where links do not decide.
    """
    links = {item["name"]: in_stack_links(item, stack) for item in services}
    errors: ErrorTree = {}
    for name, targets in links.items():
        missing = [t for t in targets if t not in links]
        if missing:
            errors[name] = {"links": f"service {name} has missing links: {', '.join(missing)}"}
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in done or name in errors:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            errors[path[0]] = {
                "links": f"service {path[0]} has recursive links: {' -> '.join(cycle)}"
            }
            return
        for target in links.get(name, []):
            if target in links:
                visit(target, [*path, name])
        if all(t in done for t in links[name] if t in links) and name not in errors:
            done.add(name)
            order.append(name)

    for name in links:
        visit(name, [])
    return order, errors
