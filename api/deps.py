"""Dependency providers: the runtime, the unit of work, the caller, the grid in the path."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy import select

# client_ip and request_info live with the audit helpers; re-exported for controllers.
from api.audit import client_ip, current_principal, ensure_audited, remember_principal, request_info
from core.auth import Principal, authenticate
from core.errors import AccessDenied, NotFound
from core.runtime import Runtime
from core.services import get_service
from core.unit_of_work import UnitOfWork
from models import Grid, Service


def get_runtime(state: State) -> Runtime:
    """The process-wide runtime stored on the app."""
    runtime: Runtime = state.runtime
    return runtime


async def provide_uow(
    state: State, request: Request[Any, Any, Any]
) -> AsyncGenerator[UnitOfWork, None]:
    """A request-scoped unit of work: commits (then sends jobs) when the handler succeeds.

    A successful mutating request is audited in the same transaction, by its handler or else
    by :func:`api.audit.ensure_audited`.
    """
    runtime = get_runtime(state)
    async with runtime.db.session() as session:
        uow = UnitOfWork(session, runtime.sender)
        try:
            yield uow
        except BaseException:
            await uow.rollback()
            raise
        else:
            ensure_audited(request, session)
            await uow.commit()


async def provide_principal(request: Request[Any, Any, Any], uow: UnitOfWork) -> Principal:
    """The authenticated caller, or Kontena's 403 ``invalid_token``."""
    principal = await authenticate(uow.session, request.headers.get("authorization"))
    remember_principal(request, principal)
    return principal


async def load_grid(uow: UnitOfWork, principal: Principal, name: str) -> Grid:
    """The grid named in the path: 404 before 403, as Kontena answers."""
    grid = (await uow.session.execute(select(Grid).where(Grid.name == name))).scalar_one_or_none()
    if grid is None:
        raise NotFound()
    if not principal.has_access(grid):
        raise AccessDenied()
    return grid


async def load_service(
    uow: UnitOfWork, principal: Principal, grid: str, stack: str, service: str
) -> tuple[Grid, Service]:
    """The grid and the service named in a ``/v1/services/:grid/:stack/:service`` path."""
    grid_row = await load_grid(uow, principal, grid)
    return grid_row, await get_service(uow.session, grid_row, stack, service)


__all__ = [
    "client_ip",
    "current_principal",
    "get_runtime",
    "load_grid",
    "load_service",
    "provide_principal",
    "provide_uow",
    "request_info",
]
