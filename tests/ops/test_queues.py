"""``/v1/queues``: counts read from Dramatiq's Redis keys, dead letters and requeue."""

from __future__ import annotations

import json
import time

import httpx
import redis
from dramatiq.message import Message

from core.jobs import Job
from core.runtime import Runtime
from tests.conftest import Caller
from workers.broker import DramatiqSender


def _nack_to_dead_letter(client: redis.Redis, queue: str, message: Message) -> str:
    """Put ``message`` on the dead-letter queue the way Dramatiq's nack does."""
    rid = "rid-" + message.message_id
    payload = message.copy(options={"redis_message_id": rid}).encode()
    client.zadd(f"dramatiq:{queue}.XQ", {rid: 1_700_000_000_000})
    client.hset(f"dramatiq:{queue}.XQ.msgs", rid, payload)
    return rid


async def test_queues_show_backlog_and_age(
    client: httpx.AsyncClient, admin: Caller, runtime: Runtime, redis_client: redis.Redis
) -> None:
    """Sent jobs with no worker running are ready; the oldest one's age is reported."""
    sender = runtime.sender
    assert isinstance(sender, DramatiqSender)
    sender.send(Job(actor="deploys.run", queue="deploys", args=("a" * 24,)))
    sender.send(Job(actor="deploys.run", queue="deploys", args=("b" * 24,)))
    redis_client.sadd("dramatiq:__acks__.w1.deploys", "x")
    redis_client.zadd("dramatiq:__heartbeats__", {"w1": int(time.time() * 1000)})
    redis_client.zadd("dramatiq:__heartbeats__", {"dead": 1000})

    response = await client.get("/v1/queues", headers=admin.headers)

    assert response.status_code == 200
    body = response.json()
    deploys = next(q for q in body["queues"] if q["name"] == "deploys")
    assert deploys["ready"] == 2 and deploys["in_progress"] == 1
    assert deploys["delayed"] == 0 and deploys["dead"] == 0
    assert 0 <= deploys["oldest_ready_age"] < 60
    certs = next(q for q in body["queues"] if q["name"] == "certs")
    assert certs["ready"] == 0 and certs["oldest_ready_age"] is None
    # Every broker process that talked to Redis lately heartbeats (this API's sender too).
    assert "w1" in body["workers"] and "dead" not in body["workers"]
    assert body["embedded"] is False


async def test_dead_letters_list_and_requeue(
    client: httpx.AsyncClient, admin: Caller, redis_client: redis.Redis
) -> None:
    """A dead letter shows its actor and row id; requeue moves it back to ready once."""
    message = Message(
        queue_name="deploys", actor_name="deploys.run", args=("c" * 24,), kwargs={}, options={}
    )
    _nack_to_dead_letter(redis_client, "deploys", message)

    listing = await client.get("/v1/queues/deploys/dead", headers=admin.headers)
    assert listing.status_code == 200
    [dead] = listing.json()["messages"]
    assert dead["message_id"] == message.message_id
    assert dead["actor"] == "deploys.run" and dead["args"] == ["c" * 24]
    assert dead["failed_at"] == 1_700_000_000.0

    url = f"/v1/queues/deploys/dead/{message.message_id}/requeue"
    moved = await client.post(url, headers=admin.headers)
    assert moved.status_code == 200
    assert redis_client.zcard("dramatiq:deploys.XQ") == 0
    assert redis_client.llen("dramatiq:deploys") == 1
    rid = redis_client.lindex("dramatiq:deploys", 0)
    data = json.loads(redis_client.hget("dramatiq:deploys.msgs", rid))
    assert data["actor_name"] == "deploys.run" and data["args"] == ["c" * 24]

    again = await client.post(url, headers=admin.headers)
    assert again.status_code == 404
    assert again.json() == {"error": "Not found"}


async def test_queues_are_for_master_admins(client: httpx.AsyncClient, make_user: object) -> None:
    """Anyone else gets 403 Access denied."""
    user = await make_user("ops@example.com")  # type: ignore[operator]
    for method, url in (
        ("GET", "/v1/queues"),
        ("GET", "/v1/queues/deploys/dead"),
        ("POST", "/v1/queues/deploys/dead/x/requeue"),
    ):
        response = await client.request(method, url, headers=user.headers)
        assert response.status_code == 403
        assert response.json() == {"error": "Access denied"}
