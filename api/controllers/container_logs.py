"""``GET …/container_logs`` of grids and services: lines paged or followed (reference §2.12)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from sqlalchemy import Select

from api.deps import load_grid, load_service
from api.log_streams import log_response
from api.schemas.container_logs import container_log_view
from core import container_logs, logs
from core.auth import Principal
from core.errors import Invalid
from core.unit_of_work import UnitOfWork
from models import ContainerLog, Grid


def _entry_id(entry: ContainerLog) -> int:
    return entry.id


def parse_instances(raw: str | None) -> list[int]:
    """The ``instance`` filter: comma-separated instance numbers (422 naming it otherwise)."""
    numbers: list[int] = []
    for part in logs.split_list(raw):
        if not part.isdigit():
            raise Invalid({"instance": "Instance isn't an integer"})
        numbers.append(int(part))
    return numbers


async def container_log_response(
    state: State, uow: UnitOfWork, grid: Grid, base: Select[ContainerLog], query: logs.LogQuery
) -> Response[Any]:
    """A page of ``{"logs": [...]}`` or the follow stream of the lines ``base`` selects."""
    grid_name = grid.name
    return await log_response(
        state,
        uow,
        base,
        container_logs.CONTAINER_LOG_TABLE,
        query,
        lambda entry: container_log_view(grid_name, entry),
        _entry_id,
    )


async def stack_container_logs(
    state: State, uow: UnitOfWork, grid: Grid, stack: str, params: Mapping[str, str]
) -> Response[Any]:
    """The answer of ``GET /v1/stacks/:grid/:stack/container_logs`` (filter ``container``).

    For the stack routes: they check the caller and that the stack exists, then call this.
    """
    base = container_logs.stack_container_log_select(
        grid.id, stack, containers=logs.split_list(params.get("container"))
    )
    return await container_log_response(state, uow, grid, base, logs.parse_log_query(params))


class GridContainerLogController(Controller):
    """Container logs of one grid, for its members."""

    path = "/v1/grids/{name:str}/container_logs"
    tags = ["container logs"]

    @get("/", summary="Get a grid's container logs")
    async def list_grid_container_logs(
        self,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """Filtered by ``containers``/``nodes``/``services``, paged by the log parameters."""
        grid = await load_grid(uow, principal, name)
        params = request.query_params
        query = logs.parse_log_query(params)
        base = container_logs.grid_container_log_select(
            grid.id,
            containers=logs.split_list(params.get("containers")),
            nodes=logs.split_list(params.get("nodes")),
            services=logs.split_list(params.get("services")),
        )
        return await container_log_response(state, uow, grid, base, query)


class ServiceContainerLogController(Controller):
    """Container logs of one service, for the grid's members."""

    path = "/v1/services/{grid:str}/{stack:str}/{service:str}/container_logs"
    tags = ["container logs"]

    @get("/", summary="Get a service's container logs")
    async def list_service_container_logs(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """Filtered by ``container`` (names) and ``instance`` (numbers), paged as usual."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        params = request.query_params
        query = logs.parse_log_query(params)
        base = container_logs.service_container_log_select(
            row.id,
            containers=logs.split_list(params.get("container")),
            instances=parse_instances(params.get("instance")),
        )
        return await container_log_response(state, uow, grid_row, base, query)


ROUTES = [GridContainerLogController, ServiceContainerLogController]
