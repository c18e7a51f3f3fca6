"""``/oauth2/token``, ``/oauth2/authorize`` and ``/oauth2/tokens``: issuing and revoking tokens."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State

from api.audit import client_ip, remember_principal
from api.controllers.external_login import create_invite
from api.deps import get_runtime
from api.schemas.tokens import TokenList, render_token
from core import access_tokens, oauth2
from core.access_tokens import IssuedToken
from core.audit import RequestInfo, record_audit
from core.auth import Principal, authenticate
from core.errors import TooManyRequests
from core.unit_of_work import UnitOfWork

RESOURCE = "access_token"


async def _params(request: Request[Any, Any, Any]) -> oauth2.Params:
    return oauth2.parse_params(
        await request.body(),
        request.headers.get("content-type", ""),
        dict(request.query_params),
    )


def _json(content: Any, status: int = 200) -> Response[Any]:
    """A JSON response; typed loosely because tokens and codes have different shapes.

    msgspec cannot describe an untagged union of structs, so the OpenAPI document shows these
    responses as plain JSON objects (see ``api/schemas/tokens.py`` for the two shapes).
    """
    return Response(content, status_code=status, media_type=MediaType.JSON)


def _bare_info(request: Request[Any, Any, Any]) -> RequestInfo:
    """Neither body nor query string: on these routes both may carry secrets."""
    return RequestInfo(source_ip=client_ip(request), user_agent=request.headers.get("user-agent"))


def _audit_issue(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal | None,
    issued: IssuedToken,
) -> None:
    record_audit(
        uow.session,
        principal,
        _bare_info(request),
        resource_type=RESOURCE,
        event_name="create",
        resource_id=issued.token.id,
        resource_name=issued.token.user.email,
        secret=True,
    )


class OAuth2Controller(Controller):
    """The OAuth2 endpoints of the master; bodies may be JSON or form-encoded."""

    path = "/oauth2"
    tags = ["oauth2"]

    @post("/token", summary="Exchange a code or refresh token", status_code=201)
    async def create_token(
        self, request: Request[Any, Any, Any], state: State, uow: UnitOfWork
    ) -> Response[Any]:
        """No authentication; rate limited per client address."""
        runtime = get_runtime(state)
        wait = await runtime.rate_limiter.hit(f"oauth2-token:{client_ip(request)}")
        if wait > 0:
            raise TooManyRequests(wait)
        params = await _params(request)
        issued = await oauth2.grant(uow.session, params, runtime.settings.refresh_token_expires_in)
        await uow.session.flush()
        _audit_issue(request, uow, None, issued)
        return _json(render_token(issued.token, runtime.settings.server_name, issued), 201)

    @post("/authorize", summary="Create an access token or an authorization code", status_code=201)
    async def create_authorization(
        self, request: Request[Any, Any, Any], state: State, uow: UnitOfWork
    ) -> Response[Any]:
        """``response_type`` token or code, for the caller (a master admin may name a user).

        ``response_type=invite`` creates an invite instead (user admins, configured provider).
        """
        # The response type is checked before the token, as Kontena did.
        params = await _params(request)
        if params.get("response_type") == oauth2.INVITE:
            return await create_invite(request, get_runtime(state), uow, params)
        wanted = oauth2.parse_authorization(params)
        principal = await authenticate(uow.session, request.headers.get("authorization"))
        remember_principal(request, principal)
        issued = await oauth2.authorize(uow.session, principal, wanted)
        await uow.session.flush()
        _audit_issue(request, uow, principal, issued)
        server = get_runtime(state).settings.server_name
        return _json(render_token(issued.token, server, issued), 201)

    @get("/tokens", summary="List the caller's access tokens")
    async def list_tokens(
        self, state: State, uow: UnitOfWork, principal: Principal
    ) -> Response[Any]:
        """The caller's internal tokens, without their secrets."""
        server = get_runtime(state).settings.server_name
        rows = await access_tokens.list_tokens(uow.session, principal.user)
        return _json(TokenList(tokens=[render_token(row, server) for row in rows]))

    @get("/tokens/{token_id:str}", summary="Get an access token")
    async def get_token(
        self, token_id: str, state: State, uow: UnitOfWork, principal: Principal
    ) -> Response[Any]:
        """A token by id or plain value (its owner or a master admin)."""
        token = await oauth2.owned_token(uow.session, principal, token_id)
        return _json(render_token(token, get_runtime(state).settings.server_name))

    @delete("/tokens/{token_id:str}", summary="Revoke an access token", status_code=201)
    async def delete_token(
        self, token_id: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> Response[bytes]:
        """Revoke a token (its owner or a master admin); answers 201 with an empty body."""
        token = await oauth2.owned_token(uow.session, principal, token_id)
        info = RequestInfo(
            source_ip=client_ip(request), user_agent=request.headers.get("user-agent")
        )
        # The path may hold the plain token: the entry names the token by id only.
        record_audit(
            uow.session,
            principal,
            info,
            resource_type=RESOURCE,
            event_name="delete",
            resource_id=token.id,
            resource_name=token.user.email,
            secret=True,
        )
        await uow.session.delete(token)
        return Response(b"", status_code=201, media_type=MediaType.JSON)


ROUTES = [OAuth2Controller]
