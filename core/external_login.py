"""Login through the external provider: ``/authenticate`` starts it, ``/cb`` completes it.

A login is an :class:`AuthorizationRequest` row keyed by the hash of the ``state`` handed to the
provider. It lives one hour and works once: :func:`consume` marks it used before the provider is
asked anything, and the caller commits that at once, so a failed or replayed callback cannot try
again. The user must be known beforehand: invited (an invite code), already linked (external id),
or re-authenticating with a master token. Newcomers are refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.access_tokens import IssuedToken, issue_token
from core.auth_provider import Provider, UserInfo
from core.oauth2 import OAuth2Error
from core.tokens import digest
from models import AuthorizationRequest, User
from models.base import utcnow
from models.users import LOCAL_ADMIN_EMAIL

REQUEST_TTL = timedelta(hours=1)
# The master's own page that shows a code to paste into the CLI (no local browser callback).
CODE_PAGE = "/code"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_NAME = 255


def _denied(description: str) -> OAuth2Error:
    return OAuth2Error(403, "access_denied", description)


def _invalid(description: str) -> OAuth2Error:
    return OAuth2Error(400, "invalid_request", description)


INVALID_INVITE = "Invalid invite code"


def check_redirect_uri(uri: str | None) -> str:
    """Only the caller's own machine (the CLI's local server) or the master's ``/code`` page.

    Anything else would hand the login's code to a third party. Missing means ``/code``, so an
    invite link opened in a browser works.
    """
    if uri is None:
        return CODE_PAGE
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is not None and not parts.scheme and not parts.netloc and parts.path == CODE_PAGE:
        return uri
    if parts is not None and parts.scheme in ("http", "https") and host in LOOPBACK_HOSTS:
        return uri
    raise _invalid("Invalid redirect_uri: only http(s)://localhost[:port]/… or /code are allowed")


def parse_expires_in(raw: str | None) -> int | None:
    """Lifetime asked for the master token; 0, negative or missing means it never expires."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise _invalid("Expires in isn't an integer") from exc
    return value if value > 0 else None


async def _invited_user(session: AsyncSession, invite_code: str) -> User | None:
    rows = await session.execute(select(User).where(User.invite_code == invite_code))
    return rows.scalar_one_or_none()


async def start(
    session: AsyncSession,
    provider: Provider,
    *,
    redirect_uri: str,
    invite_code: str | None,
    expires_in: int | None,
    current_user: User | None,
) -> str:
    """Store a login request; returns the provider URL to send the browser to."""
    user = current_user
    if invite_code is not None:
        user = await _invited_user(session, invite_code)
        if user is None:
            raise _denied(INVALID_INVITE)
    state = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        AuthorizationRequest(
            state_hash=digest(state),
            redirect_uri=redirect_uri,
            invite_code=invite_code,
            user_id=user.id if user is not None else None,
            expires_in=expires_in,
            created_at=now,
            expires_at=now + REQUEST_TTL,
        )
    )
    await session.flush()
    return provider.authorize_url(state)


@dataclass(frozen=True)
class PendingLogin:
    """A login request, taken out of play by :func:`consume`."""

    redirect_uri: str
    invite_code: str | None
    user_id: str | None
    expires_in: int | None


async def consume(session: AsyncSession, state: str | None) -> PendingLogin:
    """Mark the request behind ``state`` used, or say why it cannot be (400).

    The caller commits right away, before talking to the provider.
    """
    if not state:
        raise _invalid("Missing state")
    now = utcnow()
    row = (
        await session.execute(
            update(AuthorizationRequest)
            .where(
                AuthorizationRequest.state_hash == digest(state),
                AuthorizationRequest.used_at.is_(None),
                AuthorizationRequest.expires_at > now,
            )
            .values(used_at=now)
            .returning(
                AuthorizationRequest.redirect_uri,
                AuthorizationRequest.invite_code,
                AuthorizationRequest.user_id,
                AuthorizationRequest.expires_in,
            )
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is not None:
        return PendingLogin(
            redirect_uri=row.redirect_uri,
            invite_code=row.invite_code,
            user_id=row.user_id,
            expires_in=row.expires_in,
        )
    # The single UPDATE decided; this read only picks the message.
    known = (
        await session.execute(
            select(AuthorizationRequest).where(AuthorizationRequest.state_hash == digest(state))
        )
    ).scalar_one_or_none()
    if known is None:
        raise _invalid("Unknown state: this login was not started on this master")
    if known.used_at is not None:
        raise _invalid("This login request was already used; start the login again")
    raise _invalid("This login request has expired; start the login again")


async def _resolve_user(session: AsyncSession, pending: PendingLogin, info: UserInfo) -> User:
    if pending.invite_code is not None:
        # Still holding the code: an invite used (or re-issued) meanwhile no longer counts.
        user = await _invited_user(session, pending.invite_code)
        if user is None or (pending.user_id is not None and user.id != pending.user_id):
            raise _denied(INVALID_INVITE)
        # Whoever holds the invite code links their account, as in the original.
        return user
    if pending.user_id is not None:
        found = await session.get(User, pending.user_id)
        if found is None:
            raise _denied("The user who started this login no longer exists")
        return found
    rows = await session.execute(select(User).where(User.external_id == info.user_id))
    linked = rows.scalar_one_or_none()
    if linked is None:
        raise _denied("Not invited: ask an administrator of this master for an invite")
    return linked


async def complete(session: AsyncSession, pending: PendingLogin, info: UserInfo) -> IssuedToken:
    """Link the user to the provider's account and issue a ``user`` token as a code."""
    user = await _resolve_user(session, pending, info)
    if user.email == LOCAL_ADMIN_EMAIL:
        raise _denied("The local admin cannot log in through the authentication provider")
    holder = await session.execute(
        select(User.id).where(User.external_id == info.user_id, User.id != user.id)
    )
    if holder.first() is not None:
        raise _denied("This provider account is already linked to another user")
    if pending.invite_code is not None:
        # Conditional so two logins racing on one invite cannot both use it.
        used = await session.execute(
            update(User)
            .where(User.id == user.id, User.invite_code == pending.invite_code)
            .values(invite_code=None)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        if used.first() is None:
            raise _denied(INVALID_INVITE)
        user.invite_code = None
    user.external_id = info.user_id
    if not user.name and info.username:
        user.name = info.username[:MAX_NAME]
    return issue_token(
        session, user, scopes=["user"], expires_in=pending.expires_in, with_code=True
    )


def final_redirect(redirect_uri: str, code: str) -> str:
    """``redirect_uri`` with ``code`` in the query, or in the fragment for the ``/code`` page."""
    parts = urlsplit(redirect_uri)
    if not parts.netloc:
        return urlunsplit(parts._replace(fragment=urlencode({"code": code})))
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("code", code)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def provider_error(error: str, description: str | None) -> OAuth2Error:
    """502: the provider sent the browser back with an error instead of a code."""
    text = f"The authentication provider returned an error: {error}"
    if description:
        text += f" ({description})"
    return OAuth2Error(502, "provider_error", text[:300])
