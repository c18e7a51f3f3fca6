"""Who is calling: token look-up by hash and the role predicates of Kontena's authorizers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from core.errors import InvalidToken
from core.tokens import digest
from models import AccessToken, Grid, User, grid_users
from models.base import utcnow
from models.users import LOCAL_ADMIN_EMAIL

MASTER_ADMIN = "master_admin"
GRID_ADMIN = "grid_admin"
USER_ADMIN = "user_admin"
ROLES = (MASTER_ADMIN, GRID_ADMIN, USER_ADMIN)


@dataclass
class Principal:
    """The authenticated user, the token used, and the grids the user belongs to."""

    user: User
    token: AccessToken
    grid_ids: frozenset[str]

    @property
    def master_admin(self) -> bool:
        """The local ``admin`` user or a holder of the master_admin role."""
        return self.user.email == LOCAL_ADMIN_EMAIL or MASTER_ADMIN in self.user.role_names

    @property
    def user_admin(self) -> bool:
        """May list, create and remove users."""
        return self.master_admin or USER_ADMIN in self.user.role_names

    def has_access(self, grid: Grid) -> bool:
        """May read and use everything inside ``grid``."""
        return self.master_admin or grid.id in self.grid_ids

    def grid_admin(self, grid: Grid) -> bool:
        """May change ``grid`` itself and manage its node tokens."""
        roles = self.user.role_names
        return self.master_admin or (GRID_ADMIN in roles and grid.id in self.grid_ids)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if present."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(
    session: AsyncSession, header: str | None, *, now: datetime | None = None
) -> Principal:
    """Resolve the bearer token to a principal or raise Kontena's 403 ``invalid_token``."""
    plain = bearer_token(header)
    if plain is None:
        raise InvalidToken("Invalid token")
    # Every request authenticates, so token, user, roles and memberships come in one query.
    memberships = (
        select(func.aggregate_strings(grid_users.c.grid_id, ","))
        .where(grid_users.c.user_id == AccessToken.user_id)
        .scalar_subquery()
    )
    row = (
        (
            await session.execute(
                select(AccessToken, memberships)
                .options(joinedload(AccessToken.user).joinedload(User.roles))
                .where(AccessToken.token_hash == digest(plain), AccessToken.token_type == "bearer")
            )
        )
        .unique()
        .one_or_none()
    )
    if row is None or not row[0].internal:
        raise InvalidToken("Invalid token")
    token, grid_ids = row
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        raise InvalidToken("Token expired")
    return Principal(
        user=token.user, token=token, grid_ids=frozenset(grid_ids.split(",") if grid_ids else ())
    )
