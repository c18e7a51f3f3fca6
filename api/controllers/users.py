"""``/v1/user`` and ``/v1/users``: the caller, the user list, user removal and roles."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post

from api.audit import audit
from api.schemas.users import InviteList, RoleAssign, UserCreate, UserList, UserOut
from core import invites, users
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from core.validation import decode_body

RESOURCE = "user"


class CurrentUserController(Controller):
    """The user behind the caller's token."""

    path = "/v1/user"
    tags = ["users"]

    @get("/", summary="Get the current user")
    async def get_user(self, principal: Principal) -> UserOut:
        """Any valid token: its user with roles."""
        return UserOut.of(principal.user)


class UserController(Controller):
    """Users, for user admins; roles, for master admins."""

    path = "/v1/users"
    tags = ["users"]

    @get("/", summary="List users")
    async def list_users(self, uow: UnitOfWork, principal: Principal) -> UserList:
        """Every user (user_admin)."""
        return UserList.of(await users.list_users(uow.session, principal))

    @get("/invites", summary="List pending invites")
    async def list_invites(self, uow: UnitOfWork, principal: Principal) -> InviteList:
        """Users invited but not yet logged in through the provider (user_admin)."""
        return InviteList.of(await invites.list_invites(uow.session, principal))

    @post("/", summary="Create a user", status_code=201)
    async def create_user(
        self, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> UserOut:
        """Add a user by e-mail (user_admin); an addition to Kontena, which only invited."""
        body = await request.body()
        data = decode_body(body, UserCreate)
        user = await users.create_user(uow.session, principal, data.email, data.name)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="create",
            resource_id=user.id,
            resource_name=user.email,
            body=body,
        )
        return UserOut.of(user)

    @delete("/{email:str}", summary="Remove a user", status_code=200)
    async def delete_user(
        self, email: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> dict[str, Any]:
        """Remove a user and its tokens (user_admin, never oneself); answers ``{}``."""
        user = await users.get_user(uow.session, email)
        user_id = user.id
        await users.delete_user(uow.session, principal, user)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="delete",
            resource_id=user_id,
            resource_name=email,
        )
        return {}

    @post("/{email:str}/roles", summary="Give a user a role", status_code=201)
    async def create_user_role(
        self, email: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> UserOut:
        """Add a role (master_admin)."""
        user = await users.get_user(uow.session, email)
        body = await request.body()
        data = decode_body(body, RoleAssign)
        await users.add_role(uow.session, principal, user, data.role)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="add role",
            resource_id=user.id,
            resource_name=user.email,
            body=body,
        )
        return UserOut.of(user)

    @delete("/{email:str}/roles/{role:str}", summary="Take a role away", status_code=200)
    async def delete_user_role(
        self,
        email: str,
        role: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> UserOut:
        """Remove a role (master_admin); the last master admin keeps theirs."""
        user = await users.get_user(uow.session, email)
        await users.remove_role(uow.session, principal, user, role)
        audit(
            request,
            uow,
            principal,
            resource_type=RESOURCE,
            event_name="remove role",
            resource_id=user.id,
            resource_name=user.email,
        )
        return UserOut.of(user)


ROUTES = [CurrentUserController, UserController]
