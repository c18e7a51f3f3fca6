"""Service pod reconciliation against a real Docker daemon, driven by a fake master.

The agent runs in this process (build_agent + ServicePodManager on a DockerEngine); the fake
master (tests/agent/fake_master.py) serves the pod list and records ``set_state`` reports.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import docker
import pytest

from agent.docker_client import DockerEngine
from agent.main import build_agent
from agent.pod_docker import PodDocker
from agent.pods import ServicePodManager
from core.protocol import Request, Response
from tests.agent.fake_master import MasterConnection, PodBook, fake_master
from tests.agent.test_agent_session import make_config, running_agent
from tests.fixtures.server import free_port

NODE_ID = "POD:TEST:NODE"
DEADLINE = 30.0
HTTPD = [
    "sh",
    "-c",
    "mkdir -p /www && echo hello-$KONTENA_SERVICE_INSTANCE_NUMBER > "
    "/www/index.html && exec httpd -f -p 8080 -h /www",
]


@dataclass
class PodRig:
    """One agent with its pod manager, the fake master's connection and an SDK client."""

    book: PodBook
    conn: MasterConnection
    pods: ServicePodManager
    client: docker.DockerClient

    async def nudge(self, as_request: bool = True) -> None:
        """``/service_pods/notify_update`` and wait for every worker to finish one more apply."""
        before = {pid: w.applies for pid, w in self.pods.workers.items()}
        calls = self.book.list_calls
        if as_request:
            msg_id = await self.conn.send_request("/service_pods/notify_update", [])
            response: Response = await self.conn.response_to(msg_id)
            assert response.error is None and response.result == {}
        else:
            await self.conn.notify("/service_pods/notify_update", [])
        await poll(lambda: self.book.list_calls > calls)
        await poll(
            lambda: (
                all(w.applies > before.get(pid, -1) for pid, w in list(self.pods.workers.items()))
                and not any(w.applies == 0 for w in self.pods.workers.values())
            )
        )

    async def container(self, name: str) -> Any:
        """The container named ``name`` (docker SDK object), or None."""
        found = await asyncio.to_thread(
            self.client.containers.list, all=True, filters={"name": f"^/{name}$"}
        )
        return found[0] if found else None


async def poll(check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Wait until ``check()`` is true."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@asynccontextmanager
async def pod_rig(host: str, client: docker.DockerClient) -> AsyncIterator[PodRig]:
    """A connected agent whose pod manager syncs only when nudged (interval 1 h)."""
    book = PodBook()
    engine = DockerEngine(host)
    pods = ServicePodManager(PodDocker(engine), sync_interval=3600, port_timeout=15)
    async with fake_master(book.replies()) as master:
        config = make_config(master.url, docker_host=host, node_id=NODE_ID, node_name="pod-node")
        async with running_agent(build_agent(config, engine, pods=pods)):
            conn = await master.accept(timeout=DEADLINE)
            await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
            first: Request = await conn.next_frame(Request, "/node_service_pods/list", DEADLINE)
            assert first.params == [NODE_ID]
            try:
                yield PodRig(book, conn, pods, client)
            finally:
                await pods.close()
    engine.close()


def make_pod(image: str, **overrides: Any) -> dict[str, Any]:
    """A pod as the master serializes it (a dict): web.api instance 1, running."""
    pod: dict[str, Any] = {
        "id": "svc1/1",
        "service_id": "svc1",
        "service_name": "web.api",
        "instance_number": 1,
        "desired_state": "running",
        "deploy_rev": "rev-1",
        "service_revision": 1,
        "image_name": image,
        "grid_name": "g1",
        "stack_name": "web",
        "cmd": HTTPD,
        "stop_grace_period": 5,
    }
    pod.update(overrides)
    return pod


def http_get(port: int) -> str:
    """GET / on a published loopback port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        return reply.read().decode().strip()  # type: ignore[no-any-return]


@pytest.fixture
def rig_args(docker_hosts: list[str], docker_clients: list[docker.DockerClient]) -> Any:
    """The first daemon and its client."""
    return docker_hosts[0], docker_clients[0]


async def test_pod_serves_http_and_reapplying_changes_nothing(
    rig_args: Any, busybox_image: str
) -> None:
    port = free_port()
    async with pod_rig(*rig_args) as rig:
        ports = [{"container_port": 8080, "node_port": port, "protocol": "tcp", "ip": "127.0.0.1"}]
        rig.book.pods = [
            make_pod(
                busybox_image,
                ports=ports,
                wait_for_port=8080,
                env=["GREETING=hi"],
                labels={"team": "blue"},
            )
        ]
        await rig.nudge()
        state = await rig.book.wait_state(rev="rev-1", state="running")
        assert state == {
            "service_id": "svc1",
            "instance_number": 1,
            "rev": "rev-1",
            "state": "running",
        }
        # wait_for_port held the report until the port answered: HTTP works at once.
        assert await asyncio.to_thread(http_get, port) == "hello-1"

        container = await rig.container("web.api-1")
        attrs = container.attrs
        labels = attrs["Config"]["Labels"]
        assert labels["io.kontena.service.id"] == "svc1"
        assert labels["io.kontena.service.instance_number"] == "1"
        assert labels["io.kontena.container.deploy_rev"] == "rev-1"
        assert labels["io.kontena.service.revision"] == "1"
        assert labels["team"] == "blue"
        env = attrs["Config"]["Env"]
        for item in (
            "GREETING=hi",
            "KONTENA_SERVICE_ID=svc1",
            "KONTENA_SERVICE_NAME=api",
            "KONTENA_STACK_NAME=web",
            "KONTENA_GRID_NAME=g1",
            "KONTENA_NODE_NAME=pod-node",
            "KONTENA_SERVICE_INSTANCE_NUMBER=1",
        ):
            assert item in env
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert attrs["HostConfig"]["Init"] is True
        first_id, created = container.id, attrs["Created"]

        # The same list twice (request and notification): nothing is touched, nothing re-sent.
        reports = len(rig.book.states)
        await rig.nudge()
        await rig.nudge(as_request=False)
        again = await rig.container("web.api-1")
        assert (again.id, again.attrs["Created"]) == (first_id, created)
        assert again.attrs["State"]["StartedAt"] == attrs["State"]["StartedAt"]
        assert len(rig.book.states) == reports

        # A new deploy of the same image and revision: reported, but not re-created.
        rig.book.pods = [
            make_pod(
                busybox_image,
                ports=ports,
                deploy_rev="rev-2",
                env=["GREETING=hi"],
                labels={"team": "blue"},
            )
        ]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-2", state="running")
        assert (await rig.container("web.api-1")).id == first_id

        # A new service revision re-creates it.
        rig.book.pods = [
            make_pod(
                busybox_image,
                ports=ports,
                deploy_rev="rev-3",
                service_revision=2,
                env=["GREETING=bye"],
            )
        ]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-3", state="running")
        recreated = await rig.container("web.api-1")
        assert recreated.id != first_id
        assert "GREETING=bye" in recreated.attrs["Config"]["Env"]
        assert recreated.attrs["Config"]["Labels"]["io.kontena.service.revision"] == "2"
        await poll(lambda: _answers(port))


def _answers(port: int) -> bool:
    try:
        return http_get(port) == "hello-1"
    except OSError:
        return False


async def test_stop_start_restart_and_removal(rig_args: Any, busybox_image: str) -> None:
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [make_pod(busybox_image)]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-1", state="running")
        container = await rig.container("web.api-1")
        started = container.attrs["State"]["StartedAt"]

        # /service_pods/restart restarts the same container.
        await rig.conn.notify("/service_pods/restart", ["svc1", 1])
        async with asyncio.timeout(DEADLINE):
            while True:
                await asyncio.to_thread(container.reload)
                if container.attrs["State"]["StartedAt"] != started:
                    break
                await asyncio.sleep(0.05)
        assert container.status == "running"
        assert (await rig.container("web.api-1")).id == container.id

        rig.book.pods = [make_pod(busybox_image, desired_state="stopped", deploy_rev="rev-2")]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-2", state="stopped")
        await asyncio.to_thread(container.reload)
        assert container.status == "exited"

        rig.book.pods = [make_pod(busybox_image, deploy_rev="rev-3")]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-3", state="running")
        await asyncio.to_thread(container.reload)
        assert container.status == "running"

        # Gone from the list: stopped and removed, and its worker retires.
        rig.book.pods = []
        await rig.nudge()
        await poll(lambda: not rig.pods.workers)
        assert await rig.container("web.api-1") is None


async def test_terminated_pod_and_orphans_are_removed(rig_args: Any, busybox_image: str) -> None:
    host, client = rig_args
    # A kontena container this node no longer runs (e.g. deleted while the agent was away).
    orphan = await asyncio.to_thread(
        client.containers.run,
        busybox_image,
        ["sleep", "600"],
        name="old.svc-1",
        detach=True,
        init=True,
        labels={"io.kontena.service.id": "gone", "io.kontena.service.instance_number": "1"},
    )
    async with pod_rig(host, client) as rig:
        async with asyncio.timeout(DEADLINE):
            while await rig.container("old.svc-1") is not None:
                await asyncio.sleep(0.05)
        await poll(lambda: not rig.pods.workers)
        assert orphan.id
        rig.book.pods = [make_pod(busybox_image)]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-1", state="running")
        rig.book.pods = [make_pod(busybox_image, desired_state="terminated", deploy_rev="rev-2")]
        await rig.nudge()
        assert await rig.book.wait_state(rev="rev-2") == {
            "service_id": "svc1",
            "instance_number": 1,
            "rev": "rev-2",
            "state": "terminated",
        }
        assert await rig.container("web.api-1") is None


async def test_failures_are_reported_with_their_cause(rig_args: Any, busybox_image: str) -> None:
    # Port 1 on loopback: the pull fails at once and never leaves the machine.
    missing = "127.0.0.1:1/nope/missing:latest"
    port = free_port()
    ports = [{"container_port": 8080, "node_port": port, "protocol": "tcp", "ip": "127.0.0.1"}]
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [
            make_pod(missing),
            make_pod(
                busybox_image, id="svc2/1", service_id="svc2", service_name="web.a", ports=ports
            ),
            make_pod(
                busybox_image, id="svc3/1", service_id="svc3", service_name="web.b", ports=ports
            ),
        ]
        await rig.nudge()
        failed = await rig.book.wait_state(service_id="svc1")
        assert failed["state"] == "missing" and failed["rev"] == "rev-1"
        assert missing in failed["error"]

        # Two pods on one node port: one runs, the other reports Docker's reason.
        first = await rig.book.wait_state(state="running")
        loser = "svc3" if first["service_id"] == "svc2" else "svc2"
        conflict = await rig.book.wait_state(service_id=loser)
        assert conflict["state"] == "stopped"
        assert "port is already allocated" in conflict["error"]
        assert await asyncio.to_thread(http_get, port) == "hello-1"


async def test_wait_for_port_timeout_is_an_error(rig_args: Any, busybox_image: str) -> None:
    async with pod_rig(*rig_args) as rig:
        rig.pods.port_timeout = 1.5
        rig.book.pods = [make_pod(busybox_image, cmd=["sleep", "600"], wait_for_port=9999)]
        await rig.nudge()
        state = await rig.book.wait_state(rev="rev-1")
        assert state["state"] == "running"
        assert "port 9999" in state["error"] and "did not open" in state["error"]


async def test_volumes_and_volumes_from(rig_args: Any, busybox_image: str) -> None:
    async with pod_rig(*rig_args) as rig:
        data = make_pod(
            busybox_image,
            id="svc9/1",
            service_id="svc9",
            service_name="web.data",
            cmd=["sleep", "600"],
            volumes=[
                {"path": "/anon"},
                {"path": "/named", "name": "kontena-pod-test-vol", "driver": "local"},
            ],
        )
        rig.book.pods = [data]
        await rig.nudge()
        await rig.book.wait_state(service_id="svc9", state="running")
        rig.book.pods = [
            data,
            make_pod(
                busybox_image,
                cmd=["sleep", "600"],
                volumes_from=["web.data-1"],
                domainname="web.g1.kontena.local",
            ),
        ]
        await rig.nudge()
        await rig.book.wait_state(service_id="svc1", state="running")
        mounts = {m["Destination"]: m for m in (await rig.container("web.data-1")).attrs["Mounts"]}
        assert mounts["/named"]["Name"] == "kontena-pod-test-vol"
        assert mounts["/anon"]["Type"] == "volume"
        user = (await rig.container("web.api-1")).attrs
        assert {m["Destination"] for m in user["Mounts"]} >= {"/anon", "/named"}
        assert user["Config"]["Domainname"] == "web.g1.kontena.local"
