"""First-start state: the local ``admin`` user with the master_admin role."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import MASTER_ADMIN
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
