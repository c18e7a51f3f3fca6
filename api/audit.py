"""Auditing in the API: the controllers' helper and the net under every mutating request.

Controllers audit explicitly, because only they know the resource and the event (Kontena's
``audit_event``). :func:`ensure_audited` runs when a request's unit of work is about to commit:
a successful POST/PUT/PATCH/DELETE whose handler recorded nothing gets one generic entry (never
a second one), without its body since nobody vetted it for secrets, and a warning in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import RequestInfo, record_audit, was_audited
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from models import AuditLog, Grid

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A route handler with ``opt={"audit": False}`` is deliberately never audited.
AUDIT_OPT = "audit"
# The resource type of entries the safety net writes; tests assert none appear.
UNAUDITED_RESOURCE = "request"
_FALLBACK_EVENTS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_PRINCIPAL = "principal"


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The caller's address as the ASGI server saw it."""
    return request.client.host if request.client else None


def request_info(
    request: Request[Any, Any, Any], body: bytes | None = None, *, secret: bool = False
) -> RequestInfo:
    """What the audit log keeps of a request; bodies of secret routes are never kept."""
    return RequestInfo(
        source_ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        parameters=dict(request.query_params),
        body=None if secret or body is None else body.decode(errors="replace")[:10_000],
    )


def remember_principal(request: Request[Any, Any, Any], principal: Principal) -> None:
    """Keep the authenticated caller on the request for the safety net."""
    request.state[_PRINCIPAL] = principal


def current_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller authenticated for this request, if any."""
    principal: Principal | None = request.state.get(_PRINCIPAL)
    return principal


def audit(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal | None,
    *,
    resource_type: str,
    event_name: str,
    resource_id: str | None = None,
    resource_name: str | None = None,
    grid: Grid | None = None,
    body: bytes | None = None,
    secret: bool = False,
) -> AuditLog:
    """Record an audit entry for this request; ``secret`` drops the body."""
    return record_audit(
        uow.session,
        principal,
        request_info(request, body, secret=secret),
        resource_type=resource_type,
        event_name=event_name,
        resource_id=resource_id,
        resource_name=resource_name,
        grid=grid,
        secret=secret,
    )


def ensure_audited(request: Request[Any, Any, Any], session: AsyncSession) -> None:
    """Audit a successful mutating request its handler left unaudited (once, without body)."""
    if request.method not in MUTATING_METHODS or was_audited(session):
        return
    if request.route_handler.opt.get(AUDIT_OPT) is False:
        return
    path = request.url.path
    handler = request.route_handler.handler_name
    log.warning("%s %s (%s) succeeded without an audit entry", request.method, path, handler)
    record_audit(
        session,
        current_principal(request),
        # Neither body nor query: nobody checked them for secrets.
        RequestInfo(source_ip=client_ip(request), user_agent=request.headers.get("user-agent")),
        resource_type=UNAUDITED_RESOURCE,
        event_name=_FALLBACK_EVENTS[request.method],
        resource_id=path,
        resource_name=handler,
        secret=True,
    )
