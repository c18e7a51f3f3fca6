"""``/v1/grids/:name/users``: who belongs to a grid."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post

from api.audit import audit
from api.deps import load_grid
from api.schemas.users import GridUserAssign, UserList
from core import users
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from core.validation import decode_body

RESOURCE = "user"


class GridUserController(Controller):
    """Grid membership; members read it, user admins and the grid's admins change it."""

    path = "/v1/grids/{name:str}/users"
    tags = ["grids", "users"]

    @get("/", summary="List grid users")
    async def list_grid_users(self, name: str, uow: UnitOfWork, principal: Principal) -> UserList:
        """The grid's users (members)."""
        grid = await load_grid(uow, principal, name)
        return UserList.of(await users.grid_members(uow.session, grid))

    @post("/", summary="Add a user to a grid", status_code=201)
    async def create_grid_user(
        self, name: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> UserList:
        """Make a user a member; answers every member."""
        grid = await load_grid(uow, principal, name)
        body = await request.body()
        data = decode_body(body, GridUserAssign)
        user, members = await users.assign_grid_user(uow.session, principal, grid, data.email)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="assign user",
            resource_id=user.id,
            resource_name=user.email,
            grid=grid,
            body=body,
        )
        return UserList.of(members)

    @delete("/{email:str}", summary="Remove a user from a grid", status_code=200)
    async def delete_grid_user(
        self,
        name: str,
        email: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> UserList:
        """End a membership; a grid keeps at least one user. Answers the remaining members."""
        grid = await load_grid(uow, principal, name)
        user, members = await users.unassign_grid_user(uow.session, principal, grid, email)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="unassign user",
            resource_id=user.id,
            resource_name=user.email,
            grid=grid,
        )
        return UserList.of(members)


ROUTES = [GridUserController]
