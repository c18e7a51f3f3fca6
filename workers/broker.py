"""The Dramatiq broker (Redis, or in-process when embedded) and its middleware list."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from core.config import Settings
from core.jobs import QUEUES, Job
from core.redis_client import connection_pool
from workers import context
from workers.context import WorkerContext
from workers.middleware import WorkRows

# Dramatiq retries 20 times over about a month by default; ours are few and short, and
# actors that need more say so themselves.
DEFAULT_MAX_RETRIES = 3
DEFAULT_MIN_BACKOFF_MS = 1_000
DEFAULT_MAX_BACKOFF_MS = 60_000


def middleware() -> list[Middleware]:
    """The explicit middleware list, in the order Dramatiq runs its hooks."""
    return [
        AgeLimit(),  # ticks carry max_age so a backlog does not replay stale ones
        TimeLimit(),  # per-actor time_limit; blocking calls also set their own timeouts
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # Before Retries on purpose: `after_*` hooks run in reverse list order, and WorkRows
        # needs `message.failed`, which Retries sets when retries are exhausted or on `throws`.
        WorkRows(),
        Retries(
            max_retries=DEFAULT_MAX_RETRIES,
            min_backoff=DEFAULT_MIN_BACKOFF_MS,
            max_backoff=DEFAULT_MAX_BACKOFF_MS,
        ),
        CurrentMessage(),
        AsyncIO(),  # actors are `async def` and share one loop per worker process
        # After AsyncIO: its `after_worker_shutdown` then runs first, while the loop still runs,
        # so the worker's database is disposed on the loop that opened it.
        WorkerContext(),
    ]


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A Redis broker, or Dramatiq's in-process broker when no Redis URL is configured."""
    broker: dramatiq.Broker
    if settings.embedded_queue:
        broker = StubBroker(middleware=middleware())
        broker.emit_after("process_boot")
    else:
        # Retrying connections: a restarted Redis does not fail the next enqueue or ack.
        pool = connection_pool(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
        # Maintenance (requeueing messages of dead workers) runs on 1 % of commands
        # instead of 0.1 %, so a quiet master recovers them in minutes, not hours.
        broker = RedisBroker(connection_pool=pool, middleware=middleware(), maintenance_chance=10)
    for queue in QUEUES:
        broker.declare_queue(queue)
    # One broker per process role: actors declared from now on bind to it, and actors run
    # with these settings (the embedded master's data dir, a worker's database URL).
    dramatiq.set_broker(broker)
    context.configure(settings, broker)
    return broker


class DramatiqSender:
    """Sends jobs by actor name, so the sender needs no actor imported."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send(self, job: Job) -> None:
        """Enqueue ``job`` on its queue."""
        self.broker.enqueue(
            Message(
                queue_name=job.queue,
                actor_name=job.actor,
                args=job.args,
                kwargs=job.kwargs,
                options={},
            )
        )
