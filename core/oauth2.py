"""The OAuth2 endpoints' rules: parameters, grants, authorizations and their error bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import access_tokens
from core.access_tokens import IssuedToken, issue_token
from core.auth import Principal
from core.errors import KontenaError
from models import AccessToken, User

INTERNAL_SCOPES = frozenset({"user", "owner"})
INVITE = "invite"
MAX_DESCRIPTION = 255

Params = dict[str, str | None]


class OAuth2Error(KontenaError):
    """An RFC 6749 style error: ``{"error": code, "error_description": text}``."""

    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        super().__init__({"error": error, "error_description": description})
        self.status = status


def parse_params(raw: bytes, content_type: str, query: dict[str, str]) -> Params:
    """Parameters from a JSON or form body (or the query string); blank values become None."""
    media_type = content_type.split(";")[0].strip().lower()
    data: dict[str, Any] = dict(query)
    body = raw.strip()
    try:
        if media_type == "application/json" or (body.startswith(b"{") and not media_type):
            decoded = msgspec.json.decode(body) if body else {}
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
            data.update(decoded)
        elif body:
            data.update(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError) as exc:
        raise OAuth2Error(400, "invalid_request", "Invalid parameters") from exc
    params: Params = {}
    for key, value in data.items():
        text = None if value is None else str(value).strip()
        params[str(key)] = text or None
    return params


def require_params(params: Params) -> None:
    """Kontena answers an empty request with a bare ``invalid_request``."""
    if not any(value is not None for value in params.values()):
        raise OAuth2Error(400, "invalid_request")


async def grant(session: AsyncSession, params: Params, refresh_expires_in: int) -> IssuedToken:
    """``POST /oauth2/token``: trade a code or a refresh token for a new bearer token."""
    require_params(params)
    grant_type = params.get("grant_type")
    issued: IssuedToken | None
    if grant_type == "authorization_code":
        code = params.get("code")
        if code is None:
            raise OAuth2Error(400, "invalid_request", "Missing parameter: code")
        issued = await access_tokens.exchange_code(session, code)
        unknown = "Invalid or already used code"
    elif grant_type == "refresh_token":
        refresh_token = params.get("refresh_token")
        if refresh_token is None:
            raise OAuth2Error(400, "invalid_request", "Missing parameter: refresh_token")
        issued = await access_tokens.refresh(session, refresh_token, refresh_expires_in)
        unknown = "Invalid or already used refresh token"
    else:
        raise OAuth2Error(
            400,
            "unsupported_grant_type",
            "Unsupported grant type. Supported: authorization_code, refresh_token",
        )
    if issued is None:
        raise OAuth2Error(404, "invalid_request", unknown)
    return issued


@dataclass(frozen=True)
class Authorization:
    """A validated ``POST /oauth2/authorize`` request for a token or a code."""

    with_code: bool
    scopes: list[str]
    expires_in: int
    description: str | None
    user_email: str | None


def parse_authorization(params: Params) -> Authorization:
    """Check the response type first (it decides whether a token is needed), then the rest."""
    require_params(params)
    response_type = params.get("response_type")
    # ``invite`` is answered by core.invites before this is called.
    if response_type not in ("code", "token"):
        raise OAuth2Error(
            400,
            "unsupported_response_type",
            "Unsupported response type. Supported: code, token, invite",
        )
    scope = params.get("scope")
    if scope is None:
        raise OAuth2Error(400, "invalid_scope")
    scopes = [s for s in "".join(scope.split()).split(",") if s]
    if not scopes:
        raise OAuth2Error(400, "invalid_scope")
    raw_expires = params.get("expires_in")
    try:
        expires_in = int(raw_expires) if raw_expires is not None else 0
    except ValueError as exc:
        raise OAuth2Error(400, "invalid_request", "Expires in isn't an integer") from exc
    description = params.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise OAuth2Error(400, "invalid_request", "Description is too long")
    return Authorization(
        with_code=response_type == "code",
        scopes=scopes,
        expires_in=max(expires_in, 0),
        description=description,
        user_email=params.get("user"),
    )


async def authorize(
    session: AsyncSession, principal: Principal, request: Authorization
) -> IssuedToken:
    """Issue a token or code for the caller (or, for a master admin, for another user)."""
    if any(scope not in INTERNAL_SCOPES for scope in request.scopes):
        raise OAuth2Error(400, "invalid_request", "Invalid scope")
    # A token may not mint a token with more power than itself.
    if any(scope not in principal.token.scopes for scope in request.scopes):
        raise OAuth2Error(400, "invalid_request", "Invalid scope")
    user = principal.user
    if request.user_email is not None and request.user_email != user.email:
        if not principal.master_admin:
            raise OAuth2Error(
                403, "access_denied", "Only a master admin may create tokens for other users"
            )
        found = (
            await session.execute(select(User).where(User.email == request.user_email))
        ).scalar_one_or_none()
        if found is None:
            raise OAuth2Error(404, "not_found", "User not found")
        user = found
    return issue_token(
        session,
        user,
        expires_in=request.expires_in,
        scopes=request.scopes,
        description=request.description,
        with_code=request.with_code,
    )


async def owned_token(session: AsyncSession, principal: Principal, id_or_token: str) -> AccessToken:
    """A token its owner or a master admin may see or revoke; others get Kontena's 401."""
    token = await access_tokens.find_token(session, id_or_token)
    if token is None:
        raise OAuth2Error(404, "Not found")
    if token.user_id != principal.user.id and not principal.master_admin:
        raise OAuth2Error(401, "Unauthorized")
    return token
