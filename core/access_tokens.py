"""Issuing, exchanging and revoking OAuth2 access tokens, refresh tokens and codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.tokens import digest, new_access_token, new_code, new_refresh_token
from models import AccessToken, User
from models.base import utcnow


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
    scopes: list[str] | None = None,
    description: str | None = None,
    with_code: bool = False,
) -> IssuedToken:
    """Create a bearer token (``expires_in`` 0 or None = never); a refresh token when it expires.

    With ``with_code`` the token is an authorization code to be exchanged at ``/oauth2/token``.
    """
    token = AccessToken(
        user=user,
        user_id=user.id,
        scopes=scopes or ["user"],
        description=description,
        expires_at=utcnow() + timedelta(seconds=expires_in) if expires_in else None,
    )
    issued = IssuedToken(token=token)
    if with_code:
        issued.code = new_code()
        token.token_type = "authorization_code"
        token.code_hash = digest(issued.code)
    else:
        issued.access_token = new_access_token()
        token.token_hash = digest(issued.access_token)
        token.token_last_four = issued.access_token[-4:]
        if expires_in:
            issued.refresh_token = new_refresh_token()
            token.refresh_token_hash = digest(issued.refresh_token)
            token.refresh_token_last_four = issued.refresh_token[-4:]
    session.add(token)
    return issued
