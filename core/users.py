"""Users, their roles and their grid memberships, with Kontena's authorization rules."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import MASTER_ADMIN, Principal
from core.errors import BadRequest, ErrorTree, Forbidden, Invalid, NotFound
from models import Grid, Role, User, grid_users, user_roles

NOT_ALLOWED = "Operation not allowed"


async def find_user(session: AsyncSession, email: str) -> User | None:
    """The user with ``email``, if any."""
    rows = await session.execute(select(User).where(User.email == email))
    return rows.scalar_one_or_none()


async def get_user(session: AsyncSession, email: str) -> User:
    """The user with ``email`` or 404 ``Not found``."""
    user = await find_user(session, email)
    if user is None:
        raise NotFound()
    return user


async def list_users(session: AsyncSession, principal: Principal) -> list[User]:
    """Every user, for user admins only."""
    if not principal.user_admin:
        raise Forbidden({"error": NOT_ALLOWED})
    rows = await session.execute(select(User).order_by(User.created_at, User.id))
    return list(rows.scalars())


async def create_user(
    session: AsyncSession, principal: Principal, email: str, name: str | None
) -> User:
    """Add a user who can then be given tokens, roles and grids (user admins only)."""
    if not principal.user_admin:
        raise Forbidden({"error": NOT_ALLOWED})
    if await find_user(session, email) is not None:
        raise Invalid({"email": f"User with email {email} already exists"})
    user = User(email=email, name=name, roles=[])
    session.add(user)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, principal: Principal, user: User) -> None:
    """Remove a user with its tokens, roles and memberships; never oneself."""
    if user.id == principal.user.id:
        raise BadRequest({"error": {"user": "Cannot remove itself"}})
    if not principal.user_admin:
        raise BadRequest({"error": {"user": NOT_ALLOWED}})
    # The database cascades to tokens, role and grid links; no collection needs loading.
    await session.execute(delete(User).where(User.id == user.id))
    session.expunge(user)


async def _role(session: AsyncSession, name: str) -> Role:
    role = (await session.execute(select(Role).where(Role.name == name))).scalar_one_or_none()
    if role is None:
        raise Invalid({"role": f"Role '{name}' not found"})
    return role


async def add_role(session: AsyncSession, principal: Principal, user: User, name: str) -> User:
    """Give ``user`` a role (master admins only); holding it already is fine."""
    role = await _role(session, name)
    if not principal.master_admin:
        raise Invalid({"current_user": NOT_ALLOWED})
    if role not in user.roles:
        user.roles.append(role)
        await session.flush()
    return user


async def remove_role(session: AsyncSession, principal: Principal, user: User, name: str) -> User:
    """Take a role away (master admins only); the last master admin keeps theirs."""
    role = await _role(session, name)
    tree: ErrorTree = {}
    if not principal.master_admin:
        tree["current_user"] = NOT_ALLOWED
    if role.name == MASTER_ADMIN and role in user.roles:
        holders = await session.scalar(
            select(func.count()).select_from(user_roles).where(user_roles.c.role_id == role.id)
        )
        if (holders or 0) <= 1:
            tree["role"] = "Not allowed to remove last user from Master admin role"
    if tree:
        raise Invalid(tree)
    if role in user.roles:
        user.roles.remove(role)
        await session.flush()
    return user


async def grid_members(session: AsyncSession, grid: Grid) -> list[User]:
    """The users of ``grid``, oldest first."""
    rows = await session.execute(
        select(User)
        .join(grid_users, grid_users.c.user_id == User.id)
        .where(grid_users.c.grid_id == grid.id)
        .order_by(User.created_at, User.id)
    )
    return list(rows.scalars())


def _can_manage_members(principal: Principal, grid: Grid) -> bool:
    return principal.user_admin or principal.grid_admin(grid)


async def assign_grid_user(
    session: AsyncSession, principal: Principal, grid: Grid, email: str
) -> tuple[User, list[User]]:
    """Make ``email`` a member of ``grid``; returns the user and all members."""
    if not _can_manage_members(principal, grid):
        raise Invalid({"grid": NOT_ALLOWED})
    user = await find_user(session, email)
    if user is None:
        raise NotFound("User not found")
    members = await grid_members(session, grid)
    if user not in members:
        await session.execute(insert(grid_users).values(grid_id=grid.id, user_id=user.id))
        members.append(user)
    return user, members


async def unassign_grid_user(
    session: AsyncSession, principal: Principal, grid: Grid, email: str
) -> tuple[User, list[User]]:
    """Remove ``email`` from ``grid``, which must keep at least one user."""
    tree: ErrorTree = {}
    if not _can_manage_members(principal, grid):
        tree["grid"] = NOT_ALLOWED
    members = await grid_members(session, grid)
    user = next((m for m in members if m.email == email), None)
    if user is None:
        tree["user"] = "Invalid user"
        raise Invalid(tree)
    if len(members) == 1:
        tree["grid"] = "Cannot remove last user"
    if tree:
        raise Invalid(tree)
    await session.execute(
        delete(grid_users).where(grid_users.c.grid_id == grid.id, grid_users.c.user_id == user.id)
    )
    return user, [m for m in members if m.id != user.id]
