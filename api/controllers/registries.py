"""External registries: ``/v1/grids/:grid/external_registries`` and ``/v1/external_registries``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State

from api.audit import audit
from api.deps import get_runtime, load_grid
from api.schemas.registries import (
    ExternalRegistry,
    ExternalRegistryList,
    RegistryCreate,
    registry_view,
)
from core import registries
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from core.validation import decode_body, parse_json
from models import Grid, Registry

RESOURCE = "registry"


def _redacted(body: bytes) -> bytes:
    """The body with the password masked: audit entries never keep credentials."""
    data = parse_json(body)  # already known to be valid: decode_body ran first
    if isinstance(data, dict) and "password" in data:
        data["password"] = "[FILTERED]"
        return msgspec.json.encode(data)
    return body


async def _delete(
    request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal, grid: Grid, name: str
) -> None:
    row: Registry = await registries.get_registry(uow.session, grid, name)
    audit(
        request,
        uow,
        principal,
        resource_type=RESOURCE,
        event_name="delete",
        resource_id=row.id,
        resource_name=row.name,
        grid=grid,
    )
    await registries.delete_registry(uow.session, row)


class GridRegistryController(Controller):
    """A grid's registries: list, add, and remove by name (the spec's grid-scoped path)."""

    path = "/v1/grids/{grid:str}/external_registries"
    tags = ["external registries"]

    @get("/", summary="List external registries")
    async def list_registries(
        self, grid: str, uow: UnitOfWork, principal: Principal
    ) -> ExternalRegistryList:
        """Every registry of the grid, without passwords (members)."""
        row = await load_grid(uow, principal, grid)
        items = await registries.list_registries(uow.session, row)
        return ExternalRegistryList(external_registries=[registry_view(row, i) for i in items])

    @post("/", summary="Add an external registry", status_code=201)
    async def create_registry(
        self,
        grid: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> ExternalRegistry:
        """Add ``{url, username, password, email?}``; the name is the URL's ``host[:port]``."""
        grid_row = await load_grid(uow, principal, grid)
        body = await request.body()
        data = decode_body(body, RegistryCreate)
        row = await registries.create_registry(
            uow.session, get_runtime(state).vault, grid_row, data
        )
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="create",
            resource_id=row.id,
            resource_name=row.name,
            grid=grid_row,
            body=_redacted(body),
        )
        return registry_view(grid_row, row)

    @delete("/{name:str}", summary="Remove an external registry", status_code=200)
    async def delete_grid_registry(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove a registry; answers ``{}``."""
        grid_row = await load_grid(uow, principal, grid)
        await _delete(request, uow, principal, grid_row, name)
        return {}


class RegistryController(Controller):
    """One registry by its id path ``grid/host[:port]``."""

    path = "/v1/external_registries/{grid:str}/{name:str}"
    tags = ["external registries"]

    @get("/", summary="Get an external registry")
    async def get_registry(
        self, grid: str, name: str, uow: UnitOfWork, principal: Principal
    ) -> ExternalRegistry:
        """One registry, without its password (members)."""
        grid_row = await load_grid(uow, principal, grid)
        return registry_view(grid_row, await registries.get_registry(uow.session, grid_row, name))

    @delete("/", summary="Remove an external registry", status_code=200)
    async def delete_registry(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove a registry; answers ``{}``."""
        grid_row = await load_grid(uow, principal, grid)
        await _delete(request, uow, principal, grid_row, name)
        return {}


ROUTES = [GridRegistryController, RegistryController]
