"""[F4] continuous rescheduling and stateful services, end to end, checked in Docker.

Two real agents on two real Docker daemons, the API in the test's event loop, an in-process
Dramatiq worker on Redis and the real scheduler clock sending the ``services.reschedule`` tick
every second (``KONTENA_RESCHEDULE_INTERVAL=1``). Nobody deploys by hand unless a step says so.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
import httpx
import msgspec
import pytest
import requests
from sqlalchemy import select

from core.config import Settings
from core.runtime import Runtime
from models import Node, ServiceInstance
from models.db import Database
from scheduler.clock import SCHEDULE, run_scheduler
from tests.conftest import Caller
from tests.e2e.test_deploy import GRID, HTTPD, _service_id, agents, runtime
from tests.e2e.test_real_nodes import Agents, eventually, online
from tests.e2e.test_service_lifecycle import (
    StartWorker,
    create,
    deploy,
    docker_state,
    in_docker,
    start_worker,
    two_nodes,
)

pytestmark = pytest.mark.slow

__all__ = ["agents", "runtime", "start_worker"]  # fixtures shared with the other e2e tests

# Keeps the first boot's stamp: a re-created container finds the file and leaves it alone.
STAMP = "[ -f /data/first ] || date +%s%N > /data/first; exec sleep 3600"
DEADLINE = 60  # generous on a busy 2-CPU machine; a tick comes every second


@pytest.fixture
async def ticking(settings: Settings, db: Database, runtime: Runtime) -> AsyncIterator[None]:
    """The scheduler (leader of its lease) sending the rescheduling tick every second."""
    fast = msgspec.structs.replace(settings, reschedule_interval=1.0)
    stop = asyncio.Event()
    schedule = [tick for tick in SCHEDULE if tick.actor == "services.reschedule"]
    task = asyncio.create_task(
        run_scheduler(fast, db, runtime.sender, stop=stop, holder="e2e", schedule=schedule)
    )
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


def running_on(daemons: list[int], count: int) -> Callable[[list[dict[str, Any]]], bool]:
    """A docker_state check: ``count`` running containers, all on ``daemons``."""
    return lambda found: (
        len([c for c in found if c["status"] == "running"]) == count
        and all(c["daemon"] in daemons for c in found)
    )


async def set_availability(
    client: httpx.AsyncClient, admin: Caller, node: str, availability: str
) -> None:
    """PUT the node's availability."""
    response = await client.put(
        f"/v1/nodes/{GRID}/{node}", json={"availability": availability}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def scheduler_events(client: httpx.AsyncClient, admin: Caller) -> list[str]:
    """Messages of the grid's ``scheduler`` events."""
    response = await client.get(
        f"/v1/grids/{GRID}/event_logs", params={"limit": 1000}, headers=admin.headers
    )
    return [e["message"] for e in response.json()["logs"] if e["type"] == "scheduler"]


async def test_drain_moves_stateless_instances_and_active_brings_the_daemon_back(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    ticking: None,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    web = {"image": busybox_image, "stateful": False, "cmd": ["/bin/sh", "-c", HTTPD]}
    await create(client, admin, {**web, "name": "web", "instances": 2})
    await create(client, admin, {**web, "name": "everywhere", "strategy": "daemon"})
    for name in ("web", "everywhere"):
        assert (await deploy(client, admin, name))["state"] == "success"
    web_id, daemon_id = await _service_id(db, "web"), await _service_id(db, "everywhere")
    assert {c["daemon"] for c in in_docker(docker_clients, web_id)} == {0, 1}
    assert {c["daemon"] for c in in_docker(docker_clients, daemon_id)} == {0, 1}

    started = time.monotonic()
    await set_availability(client, admin, "node-2", "drain")
    await eventually(
        docker_state(docker_clients, web_id, running_on([0], 2)),
        deadline=DEADLINE,
        what="web's instances off the drained node",
    )
    await eventually(
        docker_state(docker_clients, daemon_id, running_on([0], 1)),
        deadline=DEADLINE,
        what="the daemon's instance off the drained node",
    )
    print(f"\ndrain → instances moved in {time.monotonic() - started:.1f} s")
    events = await scheduler_events(client, admin)
    assert f"service {GRID}/null/web rescheduled: node node-2 was drained" in events

    # Kontena #3279: back to active, the daemon service runs on the node again.
    await set_availability(client, admin, "node-2", "active")
    await eventually(
        docker_state(docker_clients, daemon_id, running_on([0, 1], 2)),
        deadline=DEADLINE,
        what="the daemon back on the reactivated node",
    )
    found = in_docker(docker_clients, daemon_id)
    assert sorted(c["daemon"] for c in found) == [0, 1]
    assert f"service {GRID}/null/everywhere rescheduled: node node-2 is available" in (
        await scheduler_events(client, admin)
    )


async def test_a_put_on_a_running_service_is_rolled_out_by_the_tick(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    ticking: None,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    body = {
        "name": "greeter",
        "image": busybox_image,
        "stateful": False,
        "instances": 2,
        "env": ["GREETING=hi"],
        "cmd": ["/bin/sh", "-c", HTTPD],
    }
    await create(client, admin, body)
    assert (await deploy(client, admin, "greeter"))["state"] == "success"
    service_id = await _service_id(db, "greeter")
    before = {c["id"] for c in in_docker(docker_clients, service_id)}

    started = time.monotonic()
    response = await client.put(
        f"/v1/services/{GRID}/null/greeter", json={"env": ["GREETING=bye"]}, headers=admin.headers
    )
    assert response.status_code == 200, response.text

    def rolled_out(found: list[dict[str, Any]]) -> bool:
        return (
            len(found) == 2
            and all(c["status"] == "running" and "GREETING=bye" in c["env"] for c in found)
            and not ({c["id"] for c in found} & before)
        )

    await eventually(
        docker_state(docker_clients, service_id, rolled_out),
        deadline=DEADLINE,
        what="the new env in re-created containers",
    )
    print(f"\nPUT → re-created by the tick in {time.monotonic() - started:.1f} s")
    assert (
        f"service {GRID}/null/greeter rescheduled: revision 2 changed after the deploy of "
        "revision 1" in await scheduler_events(client, admin)
    )
    deploys = (
        await client.get(f"/v1/services/{GRID}/null/greeter/deploys", headers=admin.headers)
    ).json()["deploys"]
    assert len(deploys) == 2  # the first one and the tick's, no more


def read_stamp(clients: list[docker.DockerClient], daemon: int, name: str) -> str:
    """The first-boot stamp in /data of container ``name`` (empty when it has none yet)."""
    result = clients[daemon].containers.get(name).exec_run(["cat", "/data/first"])
    return str(result.output.decode().strip()) if result.exit_code == 0 else ""


async def stamp_of(clients: list[docker.DockerClient], daemon: int, name: str) -> str:
    """Wait for the container's stamp and return it."""

    async def check() -> str:
        try:
            return await asyncio.to_thread(read_stamp, clients, daemon, name)
        except docker.errors.APIError:
            return ""  # not running (yet)

    result: str = await eventually(check, deadline=DEADLINE, what=f"{name} wrote its stamp")
    return result


async def test_a_stateful_service_keeps_its_data_and_node_until_the_node_is_removed(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    ticking: None,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    body = {
        "name": "db",
        "image": busybox_image,
        "stateful": True,
        "volumes": ["/data"],
        "env": ["V=1"],
        "cmd": ["/bin/sh", "-c", STAMP],
    }
    await create(client, admin, body)
    first = await deploy(client, admin, "db")
    assert first["state"] == "success", first
    service_id = await _service_id(db, "db")
    (container,) = in_docker(docker_clients, service_id)
    home, other = container["daemon"], 1 - container["daemon"]
    home_node, other_node = f"node-{home + 1}", f"node-{other + 1}"
    stamp = await stamp_of(docker_clients, home, "db-1")

    # A change and a redeploy re-create the container on its node, with its data.
    response = await client.put(
        f"/v1/services/{GRID}/null/db", json={"env": ["V=2"]}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert (await deploy(client, admin, "db"))["state"] == "success"
    (again,) = in_docker(docker_clients, service_id)
    assert again["id"] != container["id"] and again["daemon"] == home
    assert "V=2" in again["env"]
    assert await stamp_of(docker_clients, home, "db-1") == stamp

    # Drain stops it in place (the tick does not move it); active starts the same container.
    await set_availability(client, admin, home_node, "drain")
    await eventually(
        docker_state(
            docker_clients,
            service_id,
            lambda found: [(c["id"], c["status"]) for c in found] == [(again["id"], "exited")],
        ),
        deadline=DEADLINE,
        what="the stateful container stopped on its drained node",
    )
    await set_availability(client, admin, home_node, "active")
    await eventually(
        docker_state(
            docker_clients,
            service_id,
            lambda found: [(c["id"], c["status"]) for c in found] == [(again["id"], "running")],
        ),
        deadline=DEADLINE,
        what="the stateful container running again",
    )
    assert await stamp_of(docker_clients, home, "db-1") == stamp

    # Its node goes offline (agent gone): the tick never moves a stateful instance, and a
    # deploy fails with a reason instead of starting it elsewhere without its data.
    agents.procs[home_node].kill()
    agents.procs[home_node].wait(10)

    async def offline() -> bool:
        nodes = (await client.get(f"/v1/grids/{GRID}/nodes", headers=admin.headers)).json()
        return any(n["name"] == home_node and n["status"] == "offline" for n in nodes["nodes"])

    await eventually(offline, deadline=DEADLINE, what=f"{home_node} offline")
    failed = await deploy(client, admin, "db")
    assert failed["state"] == "error"
    assert failed["reason"] == (
        "Cannot find applicable node for service instance db-1: Strategy ha did not find any "
        "node: stateful instance db-1 lives on a node not connected"
    )
    assert not [m for m in await scheduler_events(client, admin) if "/db " in m]

    # Removing the node: the instance loses its node; the next deploy starts it afresh on the
    # other node, with empty data (the old data stays on the removed node's Docker).
    response = await client.delete(f"/v1/nodes/{GRID}/{home_node}", headers=admin.headers)
    assert response.status_code == 200, response.text
    moved = await deploy(client, admin, "db")
    assert moved["state"] == "success", moved
    assert [d["node"] for d in moved["instance_deploys"]] == [other_node]
    fresh = await stamp_of(docker_clients, other, "db-1")
    assert fresh != stamp
    left = [c for c in in_docker(docker_clients, service_id) if c["daemon"] == home]
    assert [c["name"] for c in left] == ["db-1"]  # untouched: no agent runs there any more


def dockerd_pid(docker_host: str) -> int:
    """The pid of the daemon serving ``docker_host``, from the pid file tests/env/lib.sh has it
    write next to its socket (checked to still be a dockerd: pids get reused)."""
    root = Path(urlparse(docker_host).path).parent
    pid = int((root / "dockerd.pid").read_text().split()[0])
    assert Path(f"/proc/{pid}/comm").read_text().startswith("dockerd"), f"pid {pid} is no dockerd"
    return pid


FreezeDaemon = Callable[[int], None]


@pytest.fixture
def freeze_daemon(
    docker_hosts: list[str], docker_clients: list[docker.DockerClient]
) -> Iterator[FreezeDaemon]:
    """Freezes a test daemon (SIGSTOP); every frozen one is thawed (SIGCONT) afterwards, always.

    The daemons are shared by the whole run, so a test may not stop one for good, and
    restarting one outside tests/env/lib.sh would leave its stop bookkeeping behind. A frozen
    dockerd answers nothing, as a dead host would. Not simulated: the node's containers keep
    running under containerd. Requested by the test, this fixture is torn down before the
    autouse ``_docker_cleanup`` (set up first), so the cleanup finds the daemon answering.
    """
    frozen: list[int] = []

    def freeze(index: int) -> None:
        pid = dockerd_pid(docker_hosts[index])
        frozen.append(index)
        os.kill(pid, signal.SIGSTOP)

    yield freeze
    for index in frozen:
        os.kill(dockerd_pid(docker_hosts[index]), signal.SIGCONT)
    for index in frozen:
        end = time.monotonic() + DEADLINE
        while True:  # a thawed daemon answers at once; a poll, in case the machine is busy
            try:
                docker_clients[index].ping()
                break
            except (docker.errors.APIError, requests.exceptions.ConnectionError):
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)


def containers_on(
    clients: list[docker.DockerClient], daemon: int, service_id: str
) -> list[dict[str, Any]]:
    """The service's containers on one daemon only (``in_docker`` asks a frozen one too)."""
    return in_docker([clients[daemon]], service_id)


async def node_status(client: httpx.AsyncClient, admin: Caller, name: str) -> str | None:
    """The node's status as the API shows it."""
    nodes = (await client.get(f"/v1/grids/{GRID}/nodes", headers=admin.headers)).json()
    return next((n["status"] for n in nodes["nodes"] if n["name"] == name), None)


async def test_a_lost_node_s_instances_run_elsewhere_after_the_grace_period(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    start_worker: StartWorker,
    ticking: None,
    freeze_daemon: FreezeDaemon,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
) -> None:
    """Strategy ``random`` (30 s grace, the shortest): node-2's Docker daemon freezes and its
    agent dies. Back, the agent removes the containers the node should no longer run."""
    start_worker()
    await two_nodes(client, admin, agents, docker_hosts)
    body = {
        "name": "survivor",
        "image": busybox_image,
        "stateful": False,
        "instances": 2,
        "strategy": "random",
        # Soft: instance n prefers node-n, and goes anywhere when node-n is gone.
        "affinity": ["node==~node-%s"],
        "cmd": ["/bin/sh", "-c", HTTPD],
    }
    await create(client, admin, body)
    assert (await deploy(client, admin, "survivor"))["state"] == "success"
    service_id = await _service_id(db, "survivor")
    assert {c["daemon"] for c in in_docker(docker_clients, service_id)} == {0, 1}

    freeze_daemon(1)
    agents.procs["node-2"].kill()
    agents.procs["node-2"].wait(10)
    lost = time.monotonic()

    async def offline() -> bool:
        return await node_status(client, admin, "node-2") == "offline"

    await eventually(offline, deadline=DEADLINE, what="node-2 offline")
    detected = time.monotonic() - lost

    async def all_on_node_1() -> bool:
        async with db.session() as session:
            rows = await session.execute(
                select(Node.name)
                .join(ServiceInstance, ServiceInstance.node_id == Node.id)
                .where(ServiceInstance.service_id == service_id)
            )
            nodes = set(rows.scalars())
        found = await asyncio.to_thread(containers_on, docker_clients, 0, service_id)
        running = [c for c in found if c["status"] == "running"]
        return len(running) == 2 and nodes <= {"node-1"}

    await eventually(all_on_node_1, deadline=90, what="both instances running on node-1")
    elapsed = time.monotonic() - lost
    print(
        f"\nnode-2 lost (dockerd frozen, agent killed) → offline after {detected:.1f} s, "
        f"instances running on node-1 after {elapsed:.1f} s (grace 30 s)"
    )
    assert elapsed >= 30  # not before the strategy's grace period
    events = await scheduler_events(client, admin)
    assert (
        f"service {GRID}/null/survivor rescheduled: node node-2 has been offline longer than "
        "the 30 s grace of strategy random" in events
    )

    # The node comes back: its agent removes the containers it should no longer run.
    os.kill(dockerd_pid(docker_hosts[1]), signal.SIGCONT)  # the fixture's thaw is then a no-op
    grid = (await client.get(f"/v1/grids/{GRID}", headers=admin.headers)).json()
    agents.start(
        "node-2",
        docker_hosts[1],
        KONTENA_TOKEN=grid["token"],
        KONTENA_NODE_LABELS="az=b",
        KONTENA_POD_SYNC_INTERVAL="5",
    )
    back = time.monotonic()
    await eventually(online(client, admin, "node-2"), deadline=DEADLINE, what="node-2 back")
    await eventually(
        docker_state(docker_clients, service_id, running_on([0], 2)),
        deadline=DEADLINE,
        what="node-2's stale containers removed",
    )
    print(f"node-2 back → its stale containers removed after {time.monotonic() - back:.1f} s")
