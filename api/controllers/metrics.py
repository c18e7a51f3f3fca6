"""``GET /metrics``: Prometheus text exposition (unauthenticated unless KONTENA_METRICS_TOKEN)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from redis.asyncio import Redis

from api.controllers.queues import queue_source
from api.deps import get_runtime
from core import metrics, queues
from core.jobs import QUEUES


async def _queue_report(state: State) -> queues.QueuesReport | None:
    source = queue_source(state)
    try:
        if isinstance(source, Redis):
            return await queues.queue_report(source)
        if source is not None:
            return queues.stub_report(source)
    except Exception:
        # Redis down: the scrape still answers, and the missing queue series say so.
        return None
    return queues.QueuesReport([queues.QueueStats(q) for q in QUEUES], embedded=True)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False, opt={"audit": False})
async def get_metrics(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """HTTP, deploy, node, work-row and queue metrics."""
    runtime = get_runtime(state)
    token = runtime.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(
                {"error": "Metrics need Authorization: Bearer <KONTENA_METRICS_TOKEN>"},
                status_code=401,
            )
    families = metrics.HTTP.families()
    async with runtime.db.session() as session:
        families += await metrics.database_families(session)
    report = await _queue_report(state)
    if report is not None:
        families += metrics.queue_families(report)
    return Response(metrics.render(families), media_type=metrics.CONTENT_TYPE, status_code=200)


ROUTES = [get_metrics]
