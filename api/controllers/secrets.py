"""Secrets: ``/v1/grids/:grid/secrets`` and ``/v1/secrets/:grid/:name``.

Values go out only in the single-secret JSON; request bodies never reach the audit log.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State

from api.audit import audit
from api.deps import get_runtime, load_grid
from api.schemas.secrets import (
    Secret,
    SecretCreate,
    SecretList,
    SecretUpdate,
    secret_summary,
    secret_view,
)
from core import secrets
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from core.validation import decode_body
from models import Grid, GridSecret

RESOURCE = "grid_secret"


async def _render(uow: UnitOfWork, grid: Grid, row: GridSecret, value: str) -> Secret:
    refs = (await secrets.consumers(uow.session, grid)).get(row.name, [])
    return secret_view(grid, row, value, refs)


def _audit(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal,
    grid: Grid,
    row: GridSecret,
    event: str,
) -> None:
    audit(
        request,
        uow,
        principal,
        resource_type=RESOURCE,
        event_name=event,
        resource_id=row.id,
        resource_name=row.name,
        grid=grid,
        secret=True,
    )


async def _update(
    request: Request[Any, Any, Any],
    state: State,
    uow: UnitOfWork,
    principal: Principal,
    grid: Grid,
    name: str,
    *,
    allow_upsert: bool,
) -> Response[Secret]:
    """Update ``name``; create it from the body when ``upsert`` is allowed and asked for."""
    data = decode_body(await request.body(), SecretUpdate)
    vault = get_runtime(state).vault
    if allow_upsert and data.upsert:
        row = await secrets.find_secret(uow.session, grid, name)
    else:
        row = await secrets.get_secret(uow.session, grid, name)  # 404 when missing
    if row is None:
        # As the original: the new secret's name comes from the body, not the path.
        row, value = await secrets.create_secret(uow.session, vault, grid, data)
        _audit(request, uow, principal, grid, row, "create")
        return Response(await _render(uow, grid, row, value), status_code=201)
    value = await secrets.update_secret(uow.session, vault, grid, row, data)
    _audit(request, uow, principal, grid, row, "update")
    return Response(await _render(uow, grid, row, value), status_code=200)


class GridSecretController(Controller):
    """A grid's secrets: list (names only), create, and the legacy update path."""

    path = "/v1/grids/{grid:str}/secrets"
    tags = ["secrets"]

    @get("/", summary="List secrets")
    async def list_secrets(self, grid: str, uow: UnitOfWork, principal: Principal) -> SecretList:
        """Every secret of the grid without values (members)."""
        row = await load_grid(uow, principal, grid)
        used = await secrets.consumers(uow.session, row)
        items = await secrets.list_secrets(uow.session, row)
        return SecretList(
            secrets=[secret_summary(row, item, used.get(item.name, [])) for item in items]
        )

    @post("/", summary="Create a secret", status_code=201)
    async def create_secret(
        self,
        grid: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Secret:
        """Create ``{name, value}``; answers the secret with its value."""
        grid_row = await load_grid(uow, principal, grid)
        data = decode_body(await request.body(), SecretCreate)
        row, value = await secrets.create_secret(
            uow.session, get_runtime(state).vault, grid_row, data
        )
        _audit(request, uow, principal, grid_row, row, "create")
        return await _render(uow, grid_row, row, value)

    @put("/{name:str}", summary="Update a secret (legacy path)")
    async def update_grid_secret(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Secret]:
        """Set a secret's value; no upsert on this path, as in the original."""
        grid_row = await load_grid(uow, principal, grid)
        return await _update(request, state, uow, principal, grid_row, name, allow_upsert=False)


class SecretController(Controller):
    """One secret: read its value (audited), update or upsert, remove."""

    path = "/v1/secrets/{grid:str}/{name:str}"
    tags = ["secrets"]

    @get("/", summary="Read a secret")
    async def get_secret(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Secret:
        """The secret with its plain value; every read is audited as ``show``."""
        grid_row = await load_grid(uow, principal, grid)
        row = await secrets.get_secret(uow.session, grid_row, name)
        value = secrets.reveal(get_runtime(state).vault, grid_row, row)
        _audit(request, uow, principal, grid_row, row, "show")
        return await _render(uow, grid_row, row, value)

    @put("/", summary="Update a secret")
    async def update_secret(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Secret]:
        """Set the value (200); a missing secret with ``upsert: true`` is created (201)."""
        grid_row = await load_grid(uow, principal, grid)
        return await _update(request, state, uow, principal, grid_row, name, allow_upsert=True)

    @delete("/", summary="Remove a secret", status_code=200)
    async def delete_secret(
        self,
        grid: str,
        name: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove a secret no service uses; answers ``{}``."""
        grid_row = await load_grid(uow, principal, grid)
        row = await secrets.get_secret(uow.session, grid_row, name)
        _audit(request, uow, principal, grid_row, row, "delete")
        await secrets.delete_secret(uow.session, grid_row, row)
        return {}


ROUTES = [GridSecretController, SecretController]
