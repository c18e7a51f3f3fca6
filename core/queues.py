"""Read Dramatiq's queues for operators: depth, age, dead letters, live workers; requeue.

Reads Redis directly (redis.asyncio) so the API needs no Dramatiq import. The key layout below
was read from dramatiq 2.2.1 (dramatiq/brokers/redis.py and brokers/redis/dispatch.lua); check
it again when upgrading Dramatiq.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from core.jobs import QUEUES

# Dramatiq 2.2.1 Redis keys (namespace "dramatiq"):
NAMESPACE = "dramatiq"
# <ns>:<queue>            list of ready message ids (RPUSH on enqueue, LPOP on fetch)
# <ns>:<queue>.msgs       hash message id -> encoded message (JSON)
# <ns>:<queue>.DQ         the delay queue: a list like the ready one; messages carry options.eta
# <ns>:<queue>.XQ         zset of dead-lettered ids scored by the time (ms) they were nacked
# <ns>:<queue>.XQ.msgs    hash of the dead-lettered messages
# <ns>:__acks__.<worker>.<queue>   set of fetched, unacked ids (in progress or prefetched)
# <ns>:__heartbeats__     zset worker id -> last heartbeat (ms)
DELAY_SUFFIX = ".DQ"
DEAD_SUFFIX = ".XQ"
MSGS_SUFFIX = ".msgs"
ACKS_PREFIX = "__acks__."
HEARTBEATS = "__heartbeats__"
# Dramatiq's default heartbeat_timeout: a worker silent this long counts as dead.
HEARTBEAT_TIMEOUT_MS = 60_000

# Moves one dead letter back to its ready queue atomically; returns 0 when it is not there.
_REQUEUE_LUA = """
if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[3], ARGV[1], ARGV[2])
redis.call("rpush", KEYS[4], ARGV[1])
return 1
"""


def key(name: str) -> str:
    """The Redis key of ``name`` under Dramatiq's namespace."""
    return f"{NAMESPACE}:{name}"


@dataclass
class QueueStats:
    """The depth and health of one queue."""

    name: str
    ready: int = 0
    delayed: int = 0
    in_progress: int = 0
    dead: int = 0
    oldest_ready_age: float | None = None  # seconds since the oldest ready message was sent


@dataclass
class QueuesReport:
    """Every queue, plus the broker processes with a recent heartbeat.

    Dramatiq heartbeats on every Redis command, so senders (API processes) appear among the
    workers too; a worker missing from the list for a minute is dead.
    """

    queues: list[QueueStats]
    workers: list[str] = field(default_factory=list)
    embedded: bool = False


@dataclass
class DeadLetter:
    """A dead-lettered message: its actor, its (id-only) args and when it failed."""

    message_id: str
    redis_message_id: str
    actor: str
    args: list[Any]
    kwargs: dict[str, Any]
    failed_at: float | None  # epoch seconds


def decode_message(raw: bytes | str | None) -> dict[str, Any]:
    """Decode Dramatiq's default JSON message encoding; {} when unreadable."""
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def queue_report(
    redis: Redis, queues: Sequence[str] = QUEUES, *, now: float | None = None
) -> QueuesReport:
    """Counts per queue and the live workers, read without locking anything."""
    now = time.time() if now is None else now
    acks: dict[str, int] = {}
    async for raw in redis.scan_iter(match=key(ACKS_PREFIX + "*"), count=500):
        name = _text(raw)
        queue = name.rsplit(".", 1)[-1] if not name.endswith(DELAY_SUFFIX) else None
        if queue is not None:
            acks[queue] = acks.get(queue, 0) + int(await redis.scard(name))
    stats = []
    for queue in queues:
        item = QueueStats(
            name=queue,
            ready=int(await redis.llen(key(queue))),
            # Delayed messages stay in the .DQ hash whether a worker holds them or not.
            delayed=int(await redis.hlen(key(queue + DELAY_SUFFIX + MSGS_SUFFIX))),
            in_progress=acks.get(queue, 0),
            dead=int(await redis.zcard(key(queue + DEAD_SUFFIX))),
        )
        first = await redis.lindex(key(queue), 0)
        if first is not None:
            message = decode_message(await redis.hget(key(queue + MSGS_SUFFIX), first))
            stamp = message.get("message_timestamp")
            if isinstance(stamp, int | float):
                item.oldest_ready_age = round(max(0.0, now - stamp / 1000), 3)
        stats.append(item)
    alive_since = now * 1000 - HEARTBEAT_TIMEOUT_MS
    alive = cast(list[bytes], await redis.zrangebyscore(key(HEARTBEATS), alive_since, "+inf"))
    workers = [_text(w) for w in alive]
    return QueuesReport(queues=stats, workers=sorted(workers))


async def dead_letters(redis: Redis, queue: str, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters of ``queue``."""
    entries = cast(
        list[tuple[bytes, float]],
        await redis.zrevrange(key(queue + DEAD_SUFFIX), 0, limit - 1, withscores=True),
    )
    if not entries:
        return []
    ids = [entry[0] for entry in entries]
    raws = await redis.hmget(key(queue + DEAD_SUFFIX + MSGS_SUFFIX), ids)
    letters = []
    for (rid, score), raw in zip(entries, raws, strict=True):
        message = decode_message(raw)
        letters.append(
            DeadLetter(
                message_id=str(message.get("message_id", "")),
                redis_message_id=_text(rid),
                actor=str(message.get("actor_name", "")),
                args=list(message.get("args") or []),
                kwargs=dict(message.get("kwargs") or {}),
                failed_at=float(score) / 1000,
            )
        )
    return letters


async def requeue_dead(redis: Redis, queue: str, message_id: str) -> bool:
    """Move a dead letter (by Dramatiq or Redis message id) back to ready; False if unknown."""
    dead_msgs = key(queue + DEAD_SUFFIX + MSGS_SUFFIX)
    rid: str | None = None
    raw = await redis.hget(dead_msgs, message_id)
    if raw is not None:
        rid = message_id
    else:
        async for field_name, value in redis.hscan_iter(dead_msgs):
            if decode_message(value).get("message_id") == message_id:
                rid, raw = _text(field_name), value
                break
    if rid is None or raw is None:
        return False
    message = decode_message(raw)
    # A message that died in the delay queue goes back to the ready one, due now.
    message["queue_name"] = queue
    options = dict(message.get("options") or {})
    options.pop("eta", None)
    options.pop("retries", None)  # a fresh set of retries, as after an operator's fix
    message["options"] = options
    result = await redis.eval(
        _REQUEUE_LUA,
        4,
        key(queue + DEAD_SUFFIX),
        dead_msgs,
        key(queue + MSGS_SUFFIX),
        key(queue),
        rid,
        json.dumps(message, separators=(",", ":")),
    )
    return bool(result)


def stub_report(broker: Any, queues: Sequence[str] = QUEUES) -> QueuesReport:
    """The same report from Dramatiq's in-process StubBroker (embedded mode), duck-typed.

    The StubBroker keeps no timestamps per queue position, in-progress set or heartbeats, so
    those stay empty; ready/delayed/dead are exact.
    """
    stats = []
    for queue in queues:
        ready = broker.queues.get(queue)
        delayed = broker.queues.get(queue + DELAY_SUFFIX)
        stats.append(
            QueueStats(
                name=queue,
                ready=ready.qsize() if ready is not None else 0,
                delayed=delayed.qsize() if delayed is not None else 0,
                dead=len(broker.dead_letters_by_queue.get(queue, ())),
            )
        )
    return QueuesReport(queues=stats, embedded=True)


def stub_dead_letters(broker: Any, queue: str) -> list[DeadLetter]:
    """Dead letters of the StubBroker (failure times are not kept there)."""
    return [
        DeadLetter(
            message_id=str(m.message_id),
            redis_message_id="",
            actor=str(m.actor_name),
            args=list(m.args),
            kwargs=dict(m.kwargs),
            failed_at=None,
        )
        for m in broker.dead_letters_by_queue.get(queue, ())
    ]


def stub_requeue(broker: Any, queue: str, message_id: str) -> bool:
    """Re-enqueue a StubBroker dead letter; False if unknown."""
    letters = broker.dead_letters_by_queue.get(queue, [])
    for proxy in list(letters):
        if str(proxy.message_id) == message_id:
            letters.remove(proxy)
            broker.enqueue(proxy.message.copy(queue_name=queue))
            return True
    return False
