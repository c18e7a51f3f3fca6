"""The broker maintenance tick requeues what a dead worker had fetched, without chance."""

from __future__ import annotations

import redis

from core.runtime import Runtime
from workers.broker import DramatiqSender
from workers.maintenance import run_broker_maintenance


def test_maintenance_requeues_a_dead_workers_messages(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    """A message in a silent worker's ack set goes back to the ready queue at once."""
    assert isinstance(runtime.sender, DramatiqSender)
    broker = runtime.sender.broker
    redis_client.hset("dramatiq:deploys.msgs", "m1", b"{}")
    redis_client.sadd("dramatiq:__acks__.dead-worker.deploys", "m1")
    redis_client.zadd("dramatiq:__heartbeats__", {"dead-worker": 1_000})

    assert run_broker_maintenance(broker) >= 4

    assert redis_client.lrange("dramatiq:deploys", 0, -1) == [b"m1"]
    assert not redis_client.exists("dramatiq:__acks__.dead-worker.deploys")
    assert redis_client.zscore("dramatiq:__heartbeats__", "dead-worker") is None
