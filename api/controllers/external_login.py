"""Login through the external provider (``/authenticate``, ``/cb``, ``/code``) and invites."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.response import Redirect

from api.audit import audit, client_ip, remember_principal
from api.deps import get_runtime
from api.schemas.users import Invitation
from core import external_login, invites, oauth2
from core.audit import RequestInfo, record_audit
from core.auth import authenticate
from core.auth_provider import load_provider, not_configured, root_url
from core.errors import InvalidToken, TooManyRequests
from core.runtime import Runtime
from core.unit_of_work import UnitOfWork
from models import User
from models.users import LOCAL_ADMIN_EMAIL

# Neither the login's code nor the provider's state may be cached or leak through Referer.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _query(request: Request[Any, Any, Any]) -> oauth2.Params:
    return oauth2.parse_params(b"", "", dict(request.query_params))


def _redirect(url: str) -> Redirect:
    return Redirect(path=url, status_code=302, headers=NO_STORE)


async def _current_user(uow: UnitOfWork, request: Request[Any, Any, Any]) -> User | None:
    """A caller who sends a valid token re-links its own account (the route is soft-excluded)."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    try:
        principal = await authenticate(uow.session, header)
    except InvalidToken:
        return None
    remember_principal(request, principal)
    return None if principal.user.email == LOCAL_ADMIN_EMAIL else principal.user


@get(
    ["/authenticate", "/oauth2/authenticate"],
    summary="Log in through the authentication provider",
    tags=["oauth2"],
    status_code=302,
)
async def authenticate_user(
    request: Request[Any, Any, Any], state: State, uow: UnitOfWork
) -> Redirect:
    """Store a login request and send the browser to the provider (rate limited per address)."""
    runtime = get_runtime(state)
    wait = await runtime.rate_limiter.hit(f"authenticate:{client_ip(request)}")
    if wait > 0:
        raise TooManyRequests(wait)
    provider = await load_provider(uow.session, runtime.vault, runtime.settings.resolved_public_url)
    if provider is None:
        raise not_configured()
    params = _query(request)
    redirect_uri = external_login.check_redirect_uri(params.get("redirect_uri"))
    expires_in = external_login.parse_expires_in(params.get("expires_in"))
    invite_code = params.get("invite_code")
    current = None if invite_code else await _current_user(uow, request)
    url = await external_login.start(
        uow.session,
        provider,
        redirect_uri=redirect_uri,
        invite_code=invite_code,
        expires_in=expires_in,
        current_user=current,
    )
    return _redirect(url)


@get("/cb", summary="Complete a login at the authentication provider", tags=["oauth2"])
async def complete_login(
    request: Request[Any, Any, Any], state: State, uow: UnitOfWork
) -> Redirect:
    """Trade the provider's code, find the user, send the browser back with a master code."""
    runtime = get_runtime(state)
    params = _query(request)
    error = params.get("error")
    # Its own short transaction: the state is spent even if what follows fails, and no
    # database transaction stays open while the provider is being called.
    async with runtime.db.session() as session:
        try:
            pending = await external_login.consume(session, params.get("state"))
        except oauth2.OAuth2Error:
            if error is None:
                raise
            pending = None
        provider = await load_provider(session, runtime.vault, runtime.settings.resolved_public_url)
        await session.commit()
    if error is not None:
        raise external_login.provider_error(error, params.get("error_description"))
    assert pending is not None
    if provider is None:
        raise not_configured()
    code = params.get("code")
    if code is None:
        raise oauth2.OAuth2Error(400, "invalid_request", "Missing code")
    info = await provider.userinfo(await provider.exchange_code(code))
    issued = await external_login.complete(uow.session, pending, info)
    await uow.session.flush()
    record_audit(
        uow.session,
        None,
        # The query holds the provider's code and the state: neither is kept.
        RequestInfo(source_ip=client_ip(request), user_agent=request.headers.get("user-agent")),
        resource_type="access_token",
        event_name="login",
        resource_id=issued.token.id,
        resource_name=issued.token.user.email,
        secret=True,
    )
    assert issued.code is not None
    return _redirect(external_login.final_redirect(pending.redirect_uri, issued.code))


_CODE_SCRIPT = """
const params = new URLSearchParams(window.location.hash.slice(1));
const code = params.get("code");
document.getElementById("code").textContent = code || "(no code in this address)";
if (code) {
  document.getElementById("command").textContent =
    "kontena master login --code " + code + " " + window.location.origin;
}
history.replaceState(null, "", window.location.pathname);
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_CODE_SCRIPT.encode()).digest()).decode()
CODE_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Kontena Master login code</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>Login code</h1>
<p>Your login code (single use) is:</p>
<pre id="code" style="font-size: 2em"></pre>
<p>Complete the login with:</p>
<pre id="command"></pre>
<script>{_CODE_SCRIPT}</script>
</body>
</html>
"""


@get("/code", summary="Show a login code", tags=["oauth2"], media_type=MediaType.HTML)
async def show_code() -> Response[str]:
    """A static page that shows the code carried in its address's fragment."""
    headers = dict(NO_STORE)
    headers["Content-Security-Policy"] = f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'"
    return Response(CODE_PAGE, media_type=MediaType.HTML, headers=headers)


async def create_invite(
    request: Request[Any, Any, Any], runtime: Runtime, uow: UnitOfWork, params: oauth2.Params
) -> Response[Any]:
    """``POST /oauth2/authorize response_type=invite``: provider first (501), then the caller."""
    public_url = runtime.settings.resolved_public_url
    if await load_provider(uow.session, runtime.vault, public_url) is None:
        raise not_configured()
    principal = await authenticate(uow.session, request.headers.get("authorization"))
    remember_principal(request, principal)
    user = await invites.invite_user(
        uow.session,
        principal,
        email=params.get("email"),
        external_id=params.get("external_id"),
        username=params.get("username") or params.get("name"),
    )
    assert user.invite_code is not None
    audit(
        request,
        uow,
        principal,
        resource_type="user",
        event_name="invite",
        resource_id=user.id,
        resource_name=user.email,
        secret=True,
    )
    link = invites.invite_link(
        await root_url(uow.session, runtime.vault, public_url), user.invite_code
    )
    body = Invitation(email=user.email, invite_code=user.invite_code, link=link)
    return Response(body, status_code=201, media_type=MediaType.JSON)


ROUTES = [authenticate_user, complete_login, show_code]
