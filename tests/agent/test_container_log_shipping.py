"""The agent's log shipper on a real Docker daemon, storing through the master's real handlers.

The peer below stands in for the WebSocket only: each request runs the master's own handler
(core.container_log_rpc via core.node_updates) in a transaction on the real database, exactly
as api.agent_ws does. It can be told to lose the answer of a stored batch, or to refuse one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import docker
import httpx
import pytest
from sqlalchemy import select

import core.container_log_rpc  # registers the container log methods
from agent.container_logs import LogClient, LogShipper
from agent.rpc import RemoteError, RpcPeer, RpcTimeout
from core.node_updates import AgentError, handle_agent_message
from core.protocol import LOG_BATCH_METHOD
from models import ContainerLog, Node, Service
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.service_rows import create_service

assert core.container_log_rpc  # imported for its registrations

DEADLINE = 30.0


class DbPeer:
    """Runs agent requests through the master's handlers; failures can be injected."""

    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id
        self.lose_next_answer = False
        self.refuse_next_batch = False
        self.batches = 0

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:
        if method == LOG_BATCH_METHOD:
            self.batches += 1
            if self.refuse_next_batch:
                self.refuse_next_batch = False
                raise RemoteError(503, "master busy")
        async with self.db.session() as session:
            node = await session.get(Node, self.node_id)
            assert node is not None
            try:
                result = await handle_agent_message(session, node, method, params)
            except AgentError as exc:
                raise RemoteError(exc.code, exc.message) from exc
            await session.commit()
        if method == LOG_BATCH_METHOD and self.lose_next_answer:
            self.lose_next_answer = False
            raise RpcTimeout("answer lost")  # stored, but the agent never hears it
        return result


async def poll(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Await ``check()`` until truthy."""
    end = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.1)


async def stored(db: Database) -> list[tuple[str, str, str]]:
    """(container name, stream, data) of every stored line, by id."""
    async with db.session() as session:
        rows = await session.execute(
            select(ContainerLog.name, ContainerLog.type, ContainerLog.data).order_by(
                ContainerLog.id
            )
        )
        return [(r.name, r.type, r.data) for r in rows]


@pytest.fixture
async def ids(client: httpx.AsyncClient, admin: Caller, db: Database) -> dict[str, str]:
    """Grid ``main`` with node ``n1`` and service ``web``: their database ids."""
    assert (await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)).is_success
    node = await client.post("/v1/grids/main/nodes", json={"name": "n1"}, headers=admin.headers)
    assert node.status_code == 201, node.text
    await create_service(client, admin.headers, name="web")
    async with db.session() as session:
        return {
            "node": (await session.execute(select(Node.id))).scalar_one(),
            "service": (await session.execute(select(Service.id))).scalar_one(),
        }


async def test_restarts_lost_answers_and_refused_batches_lose_and_repeat_nothing(
    db: Database,
    ids: dict[str, str],
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    cleanup_containers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.container_logs")
    client = docker_clients[0]
    labels = {
        **cleanup_containers,
        "io.kontena.service.id": ids["service"],
        "io.kontena.service.instance_number": "1",
    }
    # Prints 3 lines (one on stderr), then one line per /tmp/say file; a TTY twin prints one.
    script = (
        "echo a1; echo e1 >&2; echo a2; "
        "while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm -f /tmp/say; fi; "
        "sleep 0.05; done"
    )
    web = client.containers.run(
        busybox_image, ["sh", "-c", script], name="web-1", labels=labels, detach=True, init=True
    )
    tty_labels = {**labels, "io.kontena.service.instance_number": "2"}
    client.containers.run(
        busybox_image,
        ["sh", "-c", "echo tty-1; sleep 3600"],
        name="web-2",
        labels=tty_labels,
        tty=True,
        detach=True,
        init=True,
    )
    # A log driver Docker cannot read back: nothing to ship, and no error loop.
    client.containers.run(
        busybox_image,
        ["sh", "-c", "echo silent; sleep 3600"],
        name="web-3",
        labels={**labels, "io.kontena.service.instance_number": "3"},
        log_config={"Type": "none"},
        detach=True,
        init=True,
    )
    peer = DbPeer(db, ids["node"])
    shipper = LogShipper(LogClient(docker_hosts[0]), scan_interval=0.2, flush_interval=0.05)

    def say(text: str) -> None:
        web.exec_run(["sh", "-c", f"echo {text} > /tmp/s && mv /tmp/s /tmp/say"])

    async def has(*expected: tuple[str, str, str]) -> bool:
        return set(expected) <= set(await stored(db))

    try:
        shipper.attach(cast(RpcPeer, peer), ids["node"])
        await poll(
            lambda: has(
                ("web-1", "stdout", "a2"), ("web-1", "stderr", "e1"), ("web-2", "stdout", "tty-1")
            ),
            "first lines",
        )
        # The master stores a batch but its answer is lost: the agent starts over from the
        # master's cursors, and nothing is stored twice.
        peer.lose_next_answer = True
        await asyncio.to_thread(say, "b1")
        await poll(lambda: has(("web-1", "stdout", "b1")), "b1")
        # A refused batch: retried after a short backoff.
        peer.refuse_next_batch = True
        await asyncio.to_thread(say, "b2")
        await poll(lambda: has(("web-1", "stdout", "b2")), "b2", timeout=60)
        # The container stops and starts again: its new lines follow, the old ones stay once.
        await asyncio.to_thread(web.stop, timeout=1)
        await asyncio.to_thread(web.start)
        await poll(lambda: has(("web-1", "stdout", "a2"), ("web-1", "stderr", "e1")), "restart")
        await asyncio.to_thread(say, "c1")
        await poll(lambda: has(("web-1", "stdout", "c1")), "c1")
        # A new agent process (a fresh shipper) resumes from the master's cursors.
        await shipper.close()
        await asyncio.to_thread(say, "d1")
        shipper = LogShipper(LogClient(docker_hosts[0]), scan_interval=0.2, flush_interval=0.05)
        shipper.attach(cast(RpcPeer, peer), ids["node"])
        await poll(lambda: has(("web-1", "stdout", "d1")), "d1")
    finally:
        await shipper.close()

    lines = await stored(db)
    web_stdout = [data for name, stream, data in lines if (name, stream) == ("web-1", "stdout")]
    # The restarted container printed a1/a2 again: those are new lines, shipped once more.
    assert web_stdout == ["a1", "a2", "b1", "b2", "a1", "a2", "c1", "d1"]
    web_stderr = [data for name, stream, data in lines if (name, stream) == ("web-1", "stderr")]
    assert web_stderr == ["e1", "e1"]
    assert [d for n, _s, d in lines if n == "web-2"] == ["tty-1"]
    assert not [d for n, _s, d in lines if n == "web-3"]
    assert "the logs of web-3 cannot be read back" in caplog.text
    assert "reading stdout of web-3 failed" not in caplog.text
    assert peer.batches >= 4
