"""``/v1/grids``: list, create, read, update and remove grids."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State

from api.deps import get_runtime, load_grid, request_info
from api.schemas.grids import Grid, GridCreate, GridList, GridUpdate, grid_view
from core import grids
from core.audit import record_audit
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from core.validation import decode_body, parse_json
from models import Grid as GridRow


def _redacted(body: bytes) -> bytes:
    """The body with a fixed grid token masked: audit entries never keep secrets."""
    data = parse_json(body)  # already known to be valid: decode_body ran first
    if isinstance(data, dict) and data.get("token"):
        data["token"] = "[FILTERED]"
        return msgspec.json.encode(data)
    return body


class GridController(Controller):
    """Grids; the JSON of each carries its join token, visible to every member."""

    path = "/v1/grids"
    tags = ["grids"]

    async def _render(self, state: State, uow: UnitOfWork, row: GridRow) -> Grid:
        counts = await grids.grid_counts(uow.session, row)
        return grid_view(row, grids.grid_token(get_runtime(state).vault, row), counts)

    @get("/", summary="List grids")
    async def list_grids(self, state: State, uow: UnitOfWork, principal: Principal) -> GridList:
        """Every grid for a master_admin, the caller's grids for everyone else."""
        vault = get_runtime(state).vault
        rows = await grids.list_grids(uow.session, principal)
        return GridList(
            grids=[grid_view(row, grids.grid_token(vault, row), counts) for row, counts in rows]
        )

    @post("/", summary="Create a grid", status_code=201)
    async def create_grid(
        self, request: Request[Any, Any, Any], state: State, uow: UnitOfWork, principal: Principal
    ) -> Grid:
        """Create a grid (master_admin); the creator becomes a member."""
        body = await request.body()
        data = decode_body(body, GridCreate)
        row, _token = await grids.create_grid(
            uow.session, get_runtime(state).vault, principal, data
        )
        record_audit(
            uow.session,
            principal,
            request_info(request, _redacted(body)),
            resource_type="grid",
            event_name="create",
            resource_id=row.id,
            resource_name=row.name,
            grid=row,
        )
        return await self._render(state, uow, row)

    @get("/{name:str}", summary="Get a grid")
    async def get_grid(
        self, name: str, state: State, uow: UnitOfWork, principal: Principal
    ) -> Grid:
        """One grid, for its members."""
        row = await load_grid(uow, principal, name)
        return await self._render(state, uow, row)

    @put("/{name:str}", summary="Update a grid")
    async def update_grid(
        self,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Grid:
        """Change the given common fields (master_admin or the grid's grid_admin)."""
        row = await load_grid(uow, principal, name)
        body = await request.body()
        data = decode_body(body, GridUpdate)
        await grids.update_grid(uow.session, principal, row, data)
        record_audit(
            uow.session,
            principal,
            request_info(request, body),
            resource_type="grid",
            event_name="update",
            resource_id=row.id,
            resource_name=row.name,
            grid=row,
        )
        return await self._render(state, uow, row)

    @delete("/{name:str}", summary="Remove a grid", status_code=200)
    async def delete_grid(
        self, name: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> dict[str, Any]:
        """Remove a grid (master_admin); answers ``{}``."""
        row = await load_grid(uow, principal, name)
        # Written before the row goes: the entry keeps the grid's name, the database then
        # clears its grid id. A refused delete rolls it back with everything else.
        record_audit(
            uow.session,
            principal,
            request_info(request),
            resource_type="grid",
            event_name="delete",
            resource_id=row.id,
            resource_name=row.name,
            grid=row,
        )
        await uow.session.flush()
        await grids.delete_grid(uow.session, principal, row)
        return {}


ROUTES = [GridController]
