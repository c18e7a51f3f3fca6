"""Users on the wire: ``{id, email, name, roles}`` and the bodies that change them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from core.invites import EMAIL_PATTERN
from models import User

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


class InviteOut(msgspec.Struct):
    """A pending invite: who, the code, since when."""

    email: str
    invite_code: str
    created_at: datetime


class InviteList(msgspec.Struct):
    """``{"invites": [...]}`` for ``GET /v1/users/invites``."""

    invites: list[InviteOut]

    @classmethod
    def of(cls, users: list[User]) -> InviteList:
        """Render the users whose invite is pending."""
        return cls(
            invites=[
                InviteOut(email=u.email, invite_code=u.invite_code or "", created_at=u.created_at)
                for u in users
            ]
        )


class Invitation(msgspec.Struct):
    """``POST /oauth2/authorize response_type=invite`` → 201."""

    email: str
    invite_code: str
    link: str
