"""Issuing, exchanging and revoking OAuth2 access tokens, refresh tokens and codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.tokens import digest, new_access_token, new_code, new_refresh_token
from models import AccessToken, User
from models.base import utcnow

BEARER = "bearer"
AUTHORIZATION_CODE = "authorization_code"


@dataclass
class IssuedToken:
    """A stored token plus the plain secrets, which exist only in this response."""

    token: AccessToken
    access_token: str | None = None
    refresh_token: str | None = None
    code: str | None = None


def issue_token(
    session: AsyncSession,
    user: User,
    *,
    expires_in: int | None = None,
    expires_at: datetime | None = None,
    scopes: list[str] | None = None,
    description: str | None = None,
    with_code: bool = False,
) -> IssuedToken:
    """Create a bearer token (``expires_in`` 0 or None = never); a refresh token when it expires.

    ``expires_at`` sets the expiry directly (a code exchange keeps the code's expiry).
    With ``with_code`` the token is an authorization code to be exchanged at ``/oauth2/token``.
    """
    if expires_at is None and expires_in and expires_in > 0:
        expires_at = utcnow() + timedelta(seconds=expires_in)
    token = AccessToken(
        user=user,
        user_id=user.id,
        scopes=scopes or ["user"],
        description=description,
        expires_at=expires_at,
    )
    issued = IssuedToken(token=token)
    if with_code:
        issued.code = new_code()
        token.token_type = AUTHORIZATION_CODE
        token.code_hash = digest(issued.code)
    else:
        issued.access_token = new_access_token()
        token.token_type = BEARER
        token.token_hash = digest(issued.access_token)
        token.token_last_four = issued.access_token[-4:]
        if expires_at is not None:
            issued.refresh_token = new_refresh_token()
            token.refresh_token_hash = digest(issued.refresh_token)
            token.refresh_token_last_four = issued.refresh_token[-4:]
    session.add(token)
    return issued


@dataclass(frozen=True)
class _Consumed:
    """What a consumed code or refresh token carried over to its successor."""

    user_id: str
    scopes: list[str]
    expires_at: datetime | None
    description: str | None


async def _consume(session: AsyncSession, *criteria: Any) -> _Consumed | None:
    """Delete the one internal token matching ``criteria`` and return what it held.

    A single DELETE … RETURNING makes the secret single-use even when two requests race:
    only one of them gets the row back.
    """
    row = (
        await session.execute(
            delete(AccessToken)
            .where(AccessToken.internal.is_(True), *criteria)
            .returning(
                AccessToken.user_id,
                AccessToken.scopes,
                AccessToken.expires_at,
                AccessToken.description,
            )
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        return None
    return _Consumed(
        user_id=row.user_id,
        scopes=list(row.scopes),
        expires_at=row.expires_at,
        description=row.description,
    )


async def exchange_code(session: AsyncSession, code: str) -> IssuedToken | None:
    """Consume an authorization code; a bearer token with the same user, scopes and expiry."""
    old = await _consume(
        session,
        AccessToken.code_hash == digest(code),
        AccessToken.token_type == AUTHORIZATION_CODE,
    )
    return await _reissue(session, old, expires_at=old.expires_at if old else None)


async def refresh(session: AsyncSession, refresh_token: str, expires_in: int) -> IssuedToken | None:
    """Consume a refresh token (even of an expired access token); a fresh expiring token."""
    old = await _consume(
        session,
        AccessToken.refresh_token_hash == digest(refresh_token),
        AccessToken.token_type == BEARER,
    )
    return await _reissue(session, old, expires_in=expires_in)


async def _reissue(
    session: AsyncSession,
    old: _Consumed | None,
    *,
    expires_in: int | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken | None:
    """A new bearer token for the owner of a consumed token, keeping scopes and description."""
    if old is None:
        return None
    user = await session.get(User, old.user_id)
    if user is None:
        return None
    return issue_token(
        session,
        user,
        expires_in=expires_in,
        expires_at=expires_at,
        scopes=list(old.scopes),
        description=old.description,
    )


async def list_tokens(session: AsyncSession, user: User) -> list[AccessToken]:
    """The user's internal tokens, oldest first."""
    rows = await session.execute(
        select(AccessToken)
        .where(AccessToken.user_id == user.id, AccessToken.internal.is_(True))
        .order_by(AccessToken.created_at, AccessToken.id)
    )
    return list(rows.scalars())


async def find_token(session: AsyncSession, id_or_token: str) -> AccessToken | None:
    """A token by its id or by its plain access token, as Kontena's tokens API looks it up."""
    rows = await session.execute(
        select(AccessToken).where(
            or_(AccessToken.id == id_or_token, AccessToken.token_hash == digest(id_or_token))
        )
    )
    return rows.scalars().first()


def expires_in(token: AccessToken, now: datetime | None = None) -> int | None:
    """Seconds until ``token`` expires (negative once expired); None when it never does."""
    if token.expires_at is None:
        return None
    return round((token.expires_at - (now or utcnow())).total_seconds())
