"""Access tokens and authorization codes on the wire (plain secrets only when just issued)."""

from __future__ import annotations

import msgspec

from core.access_tokens import AUTHORIZATION_CODE, IssuedToken, expires_in
from models import AccessToken


class TokenUser(msgspec.Struct):
    """The owner of a token."""

    id: str
    email: str
    name: str


class TokenServer(msgspec.Struct):
    """The master that issued a token."""

    name: str


class BearerToken(msgspec.Struct):
    """A bearer token; ``access_token``/``refresh_token`` are null except right after issue."""

    id: str
    token_type: str
    access_token: str | None
    refresh_token: str | None
    access_token_last_four: str | None
    refresh_token_last_four: str | None
    expires_in: int | None
    scopes: str
    description: str | None
    user: TokenUser
    server: TokenServer


class CodeToken(msgspec.Struct):
    """A pending authorization code; ``code`` is null except right after issue."""

    id: str
    grant_type: str
    code: str | None
    scopes: str
    description: str | None
    user: TokenUser
    server: TokenServer


class TokenList(msgspec.Struct):
    """``{"tokens": [...]}``."""

    tokens: list[BearerToken | CodeToken]


def render_token(
    token: AccessToken, server_name: str, issued: IssuedToken | None = None
) -> BearerToken | CodeToken:
    """Render a stored token, with its plain secrets when ``issued`` just created it."""
    user = TokenUser(id=token.user.id, email=token.user.email, name=token.user.name or "")
    server = TokenServer(name=server_name)
    scopes = ",".join(token.scopes)
    if token.token_type == AUTHORIZATION_CODE:
        return CodeToken(
            id=token.id,
            grant_type=AUTHORIZATION_CODE,
            code=issued.code if issued else None,
            scopes=scopes,
            description=token.description,
            user=user,
            server=server,
        )
    return BearerToken(
        id=token.id,
        token_type=token.token_type,
        access_token=issued.access_token if issued else None,
        refresh_token=issued.refresh_token if issued else None,
        access_token_last_four=token.token_last_four,
        refresh_token_last_four=token.refresh_token_last_four,
        expires_in=expires_in(token),
        scopes=scopes,
        description=token.description,
        user=user,
        server=server,
    )
