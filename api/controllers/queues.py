"""``/v1/queues``: Dramatiq queue depth, dead letters and requeue, for master admins.

With Redis the numbers come from Redis (core.queues); in embedded mode (`up`, no Redis) they
come from the in-process StubBroker the runtime's sender holds, marked ``"embedded": true``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from redis.asyncio import Redis

from api.audit import audit
from api.deps import get_runtime
from api.schemas.queues import DeadLettersOut, QueuesOut, render_dead, render_report
from core import queues
from core.auth import Principal
from core.errors import AccessDenied, NotFound
from core.jobs import QUEUES
from core.redis_client import async_redis
from core.unit_of_work import UnitOfWork

_REDIS = "queues_redis"


def _require_master_admin(principal: Principal, queue: str | None = None) -> None:
    if not principal.master_admin:
        raise AccessDenied()
    if queue is not None and queue not in QUEUES:
        raise NotFound()


def queue_source(state: State) -> Redis | Any:
    """A Redis client (cached per app), or the embedded StubBroker."""
    runtime = get_runtime(state)
    if runtime.settings.embedded_queue:
        return getattr(runtime.sender, "broker", None)
    client = state.get(_REDIS)
    if client is None:
        client = async_redis(runtime.settings.redis_url, socket_timeout=5)
        state[_REDIS] = client
    return client


class QueueController(Controller):
    """Operators' view of the job queues."""

    tags = ["queues"]

    @get("/v1/queues", summary="Queue depth, age and live workers")
    async def list_queues(self, state: State, principal: Principal) -> QueuesOut:
        """Ready, delayed, in-progress and dead counts per queue; oldest ready age in seconds."""
        _require_master_admin(principal)
        source = queue_source(state)
        if isinstance(source, Redis):
            return render_report(await queues.queue_report(source))
        if source is None:
            report = queues.QueuesReport([queues.QueueStats(q) for q in QUEUES], embedded=True)
            return render_report(report)
        return render_report(queues.stub_report(source))

    @get("/v1/queues/{queue:str}/dead", summary="Dead-lettered messages of a queue")
    async def list_dead_letters(
        self, queue: str, state: State, principal: Principal
    ) -> DeadLettersOut:
        """The newest 100 dead letters, with the work row ids their jobs carry."""
        _require_master_admin(principal, queue)
        source = queue_source(state)
        if isinstance(source, Redis):
            return render_dead(queue, await queues.dead_letters(source, queue))
        return render_dead(queue, queues.stub_dead_letters(source, queue) if source else [])

    @post(
        "/v1/queues/{queue:str}/dead/{message_id:str}/requeue",
        summary="Move a dead letter back to its queue",
        status_code=200,
    )
    async def requeue_dead_letter(
        self,
        queue: str,
        message_id: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, str]:
        """Requeue by Dramatiq message id (or Redis message id); 404 when unknown."""
        _require_master_admin(principal, queue)
        source = queue_source(state)
        if isinstance(source, Redis):
            moved = await queues.requeue_dead(source, queue, message_id)
        else:
            moved = source is not None and queues.stub_requeue(source, queue, message_id)
        if not moved:
            raise NotFound()
        audit(
            request,
            uow,
            principal,
            resource_type="Queue",
            event_name="requeue",
            resource_id=message_id,
            resource_name=queue,
        )
        return {"queue": queue, "message_id": message_id}


ROUTES = [QueueController]
