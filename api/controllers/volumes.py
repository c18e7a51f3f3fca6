"""Grid volumes: ``/v1/volumes/:grid`` and ``/v1/volumes/:grid/:name`` (reference §2.10)."""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State

from api.audit import audit
from api.deps import get_runtime, load_grid
from api.schemas.volumes import VolumeCreate, VolumeList, VolumeView, volume_view
from core import volumes
from core.auth import Principal
from core.errors import NotFound
from core.runtime import Runtime
from core.unit_of_work import UnitOfWork
from core.validation import decode_body
from models import Grid, Volume

RESOURCE = "volume"


async def _grid(uow: UnitOfWork, principal: Principal, name: str) -> Grid:
    """The grid; this API's 404 names it (``Grid <name> not found``), then 403 for outsiders."""
    try:
        return await load_grid(uow, principal, name)
    except NotFound:
        raise NotFound(f"Grid {name} not found") from None


async def _view(uow: UnitOfWork, grid: Grid, row: Volume) -> VolumeView:
    instances, services = await volumes.volume_usage(uow.session, grid, row)
    return volume_view(grid, row, instances, services)


class VolumeController(Controller):
    """A grid's volumes: list, create, show and delete by name (members of the grid)."""

    path = "/v1/volumes/{grid:str}"
    tags = ["volumes"]

    @get("/", summary="List volumes")
    async def list_volumes(self, grid: str, uow: UnitOfWork, principal: Principal) -> VolumeList:
        """Every volume of the grid with its node instances and the services using it."""
        grid_row = await _grid(uow, principal, grid)
        rows = await volumes.list_volumes(uow.session, grid_row)
        return VolumeList(volumes=[await _view(uow, grid_row, row) for row in rows])

    @post("/", summary="Create a volume", status_code=201)
    async def create_volume(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> VolumeView:
        """Create ``{name, scope, driver, driver_opts?}``; 422 names every bad field."""
        grid_row = await _grid(uow, principal, grid)
        body = await request.body()
        row = await volumes.create_volume(uow.session, grid_row, decode_body(body, VolumeCreate))
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="create",
            resource_id=f"{grid_row.name}/{row.name}",
            resource_name=row.name,
            grid=grid_row,
            body=body,
        )
        return volume_view(grid_row, row)

    @get("/{name:str}", summary="Get a volume")
    async def get_volume(
        self, grid: str, name: str, uow: UnitOfWork, principal: Principal
    ) -> VolumeView:
        """One volume, or 404 ``Volume <name> not found``."""
        grid_row = await _grid(uow, principal, grid)
        return await _view(uow, grid_row, await volumes.get_volume(uow.session, grid_row, name))

    @delete("/{name:str}", summary="Delete a volume", status_code=200)
    async def delete_volume(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Delete an unused volume (422 names the services still using it); answers ``{}``."""
        grid_row = await _grid(uow, principal, grid)
        row = await volumes.get_volume(uow.session, grid_row, name)
        nodes = await volumes.delete_volume(uow.session, grid_row, row)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="delete",
            resource_id=f"{grid_row.name}/{row.name}",
            resource_name=row.name,
            grid=grid_row,
        )
        runtime: Runtime = get_runtime(state)
        for node_id in nodes:
            uow.after_commit(partial(volumes.notify_nodes_removed, runtime.node_rpc, node_id))
        return {}


ROUTES = [VolumeController]
