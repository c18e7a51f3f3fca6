"""``GET /v1/services/:grid/:stack/:service/event_logs``: one service's events (deploys…)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State

from api.deps import load_service
from api.log_streams import log_response
from api.schemas.event_logs import event_log_view
from core import logs
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from models import EventLog


class ServiceEventLogController(Controller):
    """Event logs of one service, for the grid's members."""

    path = "/v1/services/{grid:str}/{stack:str}/{service:str}/event_logs"
    tags = ["event logs"]

    @get("/", summary="Get a service's event logs")
    async def list_service_event_logs(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """Events recorded for this service (create, deploy, scale, stop…), paged as usual."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        query = logs.parse_log_query(request.query_params)
        base = logs.event_log_select(grid_row.id, services=[f"{row.stack}/{row.name}"])
        grid_name = grid_row.name

        def entry_id(entry: EventLog) -> int:
            return entry.id

        return await log_response(
            state,
            uow,
            base,
            logs.EVENT_LOG_TABLE,
            query,
            lambda entry: event_log_view(grid_name, entry),
            entry_id,
        )


ROUTES = [ServiceEventLogController]
