"""A service's containers, their latest stats and per-minute metrics (grid members).

``/v1/services/:grid/:stack/:service/{containers,stats,metrics}``; kept apart from
``api.controllers.services`` so the two grow independently.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from api.deps import load_service
from api.schemas.containers import ContainerList, container_view
from api.schemas.nodes import StatsList
from core import container_metrics, containers, node_metrics, services
from core.auth import Principal
from core.unit_of_work import UnitOfWork


class ServiceContainersController(Controller):
    """Containers of one service, as the agents reported them."""

    path = "/v1/services/{grid:str}/{stack:str}/{service:str}"
    tags = ["services"]

    @get("/containers", summary="List a service's containers")
    async def list_service_containers(
        self, grid: str, stack: str, service: str, uow: UnitOfWork, principal: Principal
    ) -> ContainerList:
        """The service's containers on connected nodes, oldest first."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        found = await containers.list_containers(uow.session, grid_row.id, service_id=row.id)
        path = services.service_path(grid_row.name, row)
        return ContainerList(
            containers=[container_view(grid_row, node, item, path) for item, node in found]
        )

    @get("/stats", summary="Get service stats")
    async def get_service_stats(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> StatsList:
        """Running containers of the service with their latest stats, largest first."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        params = request.query_params
        sort = node_metrics.parse_sort(params.get("sort"))
        limit = node_metrics.parse_limit(params.get("limit"))
        found = await node_metrics.container_stats(uow.session, grid_row.id, service_id=row.id)
        return StatsList(stats=node_metrics.sort_container_stats(found, sort, limit))

    @get("/metrics", summary="Get service metrics")
    async def get_service_metrics(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> container_metrics.ServiceMetrics:
        """Per-minute stats of the service's containers (default: the last hour)."""
        _grid_row, row = await load_service(uow, principal, grid, stack, service)
        params = request.query_params
        start, end = node_metrics.parse_window(params.get("from"), params.get("to"))
        return await container_metrics.service_metrics(uow.session, row.id, start, end)


ROUTES = [ServiceContainersController]
