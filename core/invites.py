"""Invitations: a user admin pre-creates a user who then logs in through the provider."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.errors import Forbidden
from core.oauth2 import OAuth2Error
from core.users import NOT_ALLOWED, find_user
from models import User

MAX_NAME = 255
# The original's e-mail check (Kontena's invite mutation), anchored at both ends.
EMAIL_PATTERN = r"^[\w+\-.]+@[A-Za-z\d\-]+(\.[A-Za-z]+)*\.[A-Za-z]+$"
MAX_EMAIL = 255


def _check_email(email: str | None) -> str:
    if email is None:
        raise OAuth2Error(400, "invalid_request", "Missing parameter: email")
    if len(email) > MAX_EMAIL or not re.fullmatch(EMAIL_PATTERN, email):
        raise OAuth2Error(400, "invalid_request", "Email isn't in the right format")
    return email


def new_invite_code() -> str:
    """A fresh single-use invite code (hex, as the original's)."""
    return secrets.token_hex(16)


async def invite_user(
    session: AsyncSession,
    principal: Principal,
    *,
    email: str | None,
    external_id: str | None = None,
    username: str | None = None,
) -> User:
    """Create (or reuse) the user ``email`` with a fresh invite code (user admins only).

    A new code replaces any earlier one, so an old invite link stops working.
    """
    if not principal.user_admin:
        raise OAuth2Error(403, "access_denied", "You do not have the permission to create invites")
    email = _check_email(email)
    if external_id is not None:
        holder = await session.execute(
            select(User.email).where(User.external_id == external_id, User.email != email)
        )
        if holder.first() is not None:
            raise OAuth2Error(
                400, "invalid_request", "External id is already linked to another user"
            )
    user = await find_user(session, email)
    if user is None:
        user = User(email=email, name=None, roles=[])
        session.add(user)
    if external_id is not None:
        user.external_id = external_id
    if username and not user.name:
        user.name = username[:MAX_NAME]
    user.invite_code = new_invite_code()
    await session.flush()
    return user


async def list_invites(session: AsyncSession, principal: Principal) -> list[User]:
    """Users whose invite is still pending, oldest first (user admins only)."""
    if not principal.user_admin:
        raise Forbidden({"error": NOT_ALLOWED})
    rows = await session.execute(
        select(User).where(User.invite_code.is_not(None)).order_by(User.created_at, User.id)
    )
    return list(rows.scalars())


def invite_link(root_url: str, invite_code: str) -> str:
    """The link an invitee opens: the master's ``/authenticate`` with the invite code."""
    return f"{root_url}/authenticate?invite_code={invite_code}"
