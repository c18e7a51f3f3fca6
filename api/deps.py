"""Dependency providers: the runtime, the unit of work, the caller, the grid in the path."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy import select

from core.audit import RequestInfo
from core.auth import Principal, authenticate
from core.errors import AccessDenied, NotFound
from core.runtime import Runtime
from core.unit_of_work import UnitOfWork
from models import Grid


def get_runtime(state: State) -> Runtime:
    """The process-wide runtime stored on the app."""
    runtime: Runtime = state.runtime
    return runtime


async def provide_uow(state: State) -> AsyncGenerator[UnitOfWork, None]:
    """A request-scoped unit of work: commits (then sends jobs) when the handler succeeds."""
    runtime = get_runtime(state)
    async with runtime.db.session() as session:
        uow = UnitOfWork(session, runtime.sender)
        try:
            yield uow
        except BaseException:
            await uow.rollback()
            raise
        else:
            await uow.commit()


async def provide_principal(request: Request[Any, Any, Any], uow: UnitOfWork) -> Principal:
    """The authenticated caller, or Kontena's 403 ``invalid_token``."""
    return await authenticate(uow.session, request.headers.get("authorization"))


async def load_grid(uow: UnitOfWork, principal: Principal, name: str) -> Grid:
    """The grid named in the path: 404 before 403, as Kontena answers."""
    grid = (await uow.session.execute(select(Grid).where(Grid.name == name))).scalar_one_or_none()
    if grid is None:
        raise NotFound()
    if not principal.has_access(grid):
        raise AccessDenied()
    return grid


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
