"""Answer a log request: one page as ``{"logs": [...]}``, or a never-ending follow stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Response
from litestar.datastructures import State
from litestar.response import Stream
from sqlalchemy import Select

from api.deps import get_runtime
from core import logs
from core.unit_of_work import UnitOfWork

Row = TypeVar("Row")


async def log_response(
    state: State,
    uow: UnitOfWork,
    base: Select[Row],
    table: logs.LogTable,
    query: logs.LogQuery,
    view: Callable[[Row], Any],
    entry_id: Callable[[Row], int],
) -> Response[Any]:
    """The page ``query`` asks for, or (``follow``) the stream of core.logs.follow_logs."""
    if not query.follow:
        rows: list[Any] = await logs.fetch_logs(uow.session, base, table, query)
        return Response({"logs": [msgspec.to_builtins(view(row)) for row in rows]})

    def render(row: Any) -> bytes:
        return msgspec.json.encode(view(row))

    # The request's own session is released before the stream starts; each poll opens one.
    stream = logs.follow_logs(get_runtime(state).db.session, base, table, query, render, entry_id)
    return Stream(stream, media_type=MediaType.JSON)
