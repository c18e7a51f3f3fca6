"""Users on the wire: ``{id, email, name, roles}`` and the bodies that change them."""

from __future__ import annotations

from typing import Annotated

import msgspec

from models import User

# The original's e-mail check (Kontena's invite mutation), anchored at both ends.
EMAIL_PATTERN = r"^[\w+\-.]+@[A-Za-z\d\-]+(\.[A-Za-z]+)*\.[A-Za-z]+$"

Email = Annotated[str, msgspec.Meta(pattern=EMAIL_PATTERN, max_length=255)]


class RoleOut(msgspec.Struct):
    """A role a user holds."""

    name: str
    description: str


class UserOut(msgspec.Struct):
    """A user as Kontena renders it."""

    id: str
    email: str
    name: str | None
    roles: list[RoleOut]

    @classmethod
    def of(cls, user: User) -> UserOut:
        """Render a user model."""
        roles = sorted(user.roles, key=lambda r: r.name)
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            roles=[RoleOut(name=r.name, description=r.description) for r in roles],
        )


class UserList(msgspec.Struct):
    """``{"users": [...]}``."""

    users: list[UserOut]

    @classmethod
    def of(cls, users: list[User]) -> UserList:
        """Render a list of user models."""
        return cls(users=[UserOut.of(u) for u in users])


class UserCreate(msgspec.Struct, forbid_unknown_fields=False):
    """``POST /v1/users``."""

    email: Email
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None


class RoleAssign(msgspec.Struct):
    """``POST /v1/users/:email/roles``."""

    role: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class GridUserAssign(msgspec.Struct):
    """``POST /v1/grids/:grid/users``."""

    email: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
