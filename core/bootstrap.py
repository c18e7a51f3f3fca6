"""First-start state: the local ``admin`` user with the master_admin role."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import MASTER_ADMIN
from core.runtime import Runtime
from models import Role, User
from models.users import LOCAL_ADMIN_EMAIL


async def ensure_local_admin(session: AsyncSession) -> tuple[User, bool]:
    """The local admin, created on first call; returns ``(user, created)``."""
    admin = (
        await session.execute(select(User).where(User.email == LOCAL_ADMIN_EMAIL))
    ).scalar_one_or_none()
    if admin is not None:
        return admin, False
    role = (await session.execute(select(Role).where(Role.name == MASTER_ADMIN))).scalar_one()
    admin = User(email=LOCAL_ADMIN_EMAIL, name="admin", roles=[role])
    session.add(admin)
    await session.flush()
    return admin, True


async def first_start(runtime: Runtime, *, grid_name: str) -> str | None:
    """On a fresh database: the admin, a grid and a never-expiring admin token.

    Returns the plain token when it was created now, None on later starts.
    """
    from core.access_tokens import issue_token
    from core.grids import create_default_grid

    async with runtime.db.session() as session:
        admin, created = await ensure_local_admin(session)
        if not created:
            return None
        await create_default_grid(session, runtime.vault, admin, grid_name)
        issued = issue_token(
            session, admin, scopes=["user", "owner"], description="kontena-master up"
        )
        await session.commit()
        return issued.access_token
