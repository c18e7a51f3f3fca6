"""``GET /v1/grids/:name/event_logs``: a grid's events, paged or followed as a stream."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.response import Stream

from api.deps import get_runtime, load_grid
from api.schemas.event_logs import EventLogList, event_log_view
from core import logs
from core.auth import Principal
from core.unit_of_work import UnitOfWork
from models import EventLog


class EventLogController(Controller):
    """Event logs of one grid, for its members."""

    path = "/v1/grids/{name:str}/event_logs"
    tags = ["event logs"]

    @get("/", summary="Get a grid's event logs")
    async def list_event_logs(
        self,
        name: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """Filtered by ``nodes``/``stacks``/``services``, paged by Kontena's log parameters."""
        grid = await load_grid(uow, principal, name)
        params = request.query_params
        query = logs.parse_log_query(params)
        base = logs.event_log_select(
            grid.id,
            nodes=logs.split_list(params.get("nodes")),
            stacks=logs.split_list(params.get("stacks")),
            services=logs.split_list(params.get("services")),
        )
        if not query.follow:
            rows = await logs.fetch_logs(uow.session, base, logs.EVENT_LOG_TABLE, query)
            return Response(EventLogList(logs=[event_log_view(grid.name, r) for r in rows]))

        grid_name = grid.name

        def render(entry: EventLog) -> bytes:
            return msgspec.json.encode(event_log_view(grid_name, entry))

        # The request's own session is committed and released before the stream starts;
        # every poll opens a fresh one.
        stream = logs.follow_logs(
            get_runtime(state).db.session,
            base,
            logs.EVENT_LOG_TABLE,
            query,
            render,
            lambda entry: entry.id,
        )
        return Stream(stream, media_type=MediaType.JSON)


ROUTES = [EventLogController]
