"""Hooks and health checks of service pods against a real Docker daemon, driven by a fake master.

The agent runs in this process (see tests/agent/test_pods_docker.py); the fake master serves
the pod list and records ``set_state``, ``set_health`` and ``mark_oneshot_hook``. What the
master does with those (oneshot bookkeeping, deploys waiting for health) is covered end to end
in tests/e2e/test_hooks_health.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.agent.test_pods_docker import make_pod, pod_rig, poll

LOG = "/data/hooks.log"


@pytest.fixture
def rig_args(docker_hosts: list[str], docker_clients: list[docker.DockerClient]) -> Any:
    """The first daemon and its client."""
    return docker_hosts[0], docker_clients[0]


def hook(kind: str, name: str, cmd: str, oneshot: bool = False) -> dict[str, Any]:
    """A pod hook as the master sends it."""
    return {"type": kind, "name": name, "cmd": cmd, "oneshot": oneshot}


def lines(path: Path) -> list[str]:
    """The hook log written through the bind mount."""
    return path.read_text().split() if path.exists() else []


def hook_containers(client: docker.DockerClient) -> list[Any]:
    """pre_start hook containers still present (there must be none after a hook ran)."""
    return client.containers.list(all=True, filters={"label": "io.kontena.container.type"})


async def test_hooks_run_in_order_and_oneshot_hooks_once(
    rig_args: Any, busybox_image: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    log = data / "hooks.log"
    hooks = [
        hook("pre_start", "prepare", f"echo pre_start >> {LOG}"),
        hook("post_start", "announce", f"echo post_start >> {LOG}"),
        hook("post_start", "init-db", f"echo once >> {LOG}", oneshot=True),
        hook("pre_stop", "drain", f"echo pre_stop >> {LOG}"),
    ]
    volumes = [{"path": "/data", "bind_mount": str(data)}]
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [
            make_pod(busybox_image, cmd=["sleep", "3600"], hooks=hooks, volumes=volumes)
        ]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-1", state="running")
        assert lines(log) == ["pre_start", "post_start", "once"]
        # The oneshot hook was recorded with the master before it ran.
        assert rig.book.oneshot_marks == [
            [
                "POD:TEST:NODE",
                {"service_id": "svc1", "instance_number": 1},
                {"type": "post_start", "name": "init-db", "cmd": f"echo once >> {LOG}"},
            ]
        ]
        assert hook_containers(rig.client) == []

        # A new service revision re-creates the container: pre_stop on the old one, then the
        # start hooks again, but not the oneshot one.
        rig.book.pods = [
            make_pod(
                busybox_image,
                cmd=["sleep", "3600"],
                hooks=hooks,
                volumes=volumes,
                deploy_rev="rev-2",
                service_revision=2,
            )
        ]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-2", state="running")
        assert lines(log) == [
            "pre_start",
            "post_start",
            "once",
            "pre_stop",
            "pre_start",
            "post_start",
        ]

        rig.book.pods = [
            make_pod(
                busybox_image,
                cmd=["sleep", "3600"],
                hooks=hooks,
                volumes=volumes,
                deploy_rev="rev-3",
                service_revision=2,
                desired_state="stopped",
            )
        ]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-3", state="stopped")
        assert lines(log)[-1] == "pre_stop"
        assert len(rig.book.oneshot_marks) == 1

        rig.book.pods = []
        await rig.nudge()
        await poll(lambda: not rig.pods.workers)
    assert hook_containers(rig.client) == []


async def test_a_failing_pre_start_hook_fails_the_pod_without_creating_it(
    rig_args: Any, busybox_image: str
) -> None:
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [
            make_pod(busybox_image, hooks=[hook("pre_start", "migrate", "echo no; exit 3")])
        ]
        await rig.nudge()
        state = await rig.book.wait_state(rev="rev-1")
        assert state["state"] == "missing"
        assert state["error"] == "pre_start hook migrate failed: exit code 3"
        assert await rig.container("web.api-1") is None
        assert hook_containers(rig.client) == []

        rig.book.pods = [
            make_pod(busybox_image, hooks=[hook("post_start", "check", "exit 7")], deploy_rev="r2")
        ]
        await rig.nudge()
        state = await rig.book.wait_state(rev="r2")
        assert state["state"] == "running"  # started, but its post_start hook failed
        assert state["error"] == "post_start hook check failed: exit code 7"

        rig.book.pods = []
        await rig.nudge()
        await poll(lambda: not rig.pods.workers)


async def test_health_checks_report_and_restart_an_unhealthy_container(
    rig_args: Any, busybox_image: str
) -> None:
    # initial_delay 1: httpd is up by then, so a healthy container is never restarted.
    check = {"protocol": "http", "port": 8080, "uri": "/", "timeout": 1, "interval": 1}
    check["initial_delay"] = 1
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [
            make_pod(busybox_image, health_check=check),
            make_pod(
                busybox_image,
                id="svc1/2",
                instance_number=2,
                health_check={**check, "uri": "/missing"},
            ),
            make_pod(
                busybox_image,
                id="svc1/3",
                instance_number=3,
                health_check={**check, "protocol": "tcp", "uri": "/ignored"},
            ),
        ]
        await rig.nudge()
        healthy = await rig.book.wait_health(instance_number=1, status="healthy")
        assert healthy == {
            "service_id": "svc1",
            "instance_number": 1,
            "rev": "rev-1",
            "status": "healthy",
            "status_code": 200,
        }
        sick = await rig.book.wait_health(instance_number=2, status="unhealthy", status_code=404)
        assert sick["error"].endswith(":8080/missing answered 404")
        tcp = await rig.book.wait_health(instance_number=3, status="healthy", rev="rev-1")
        assert "status_code" not in tcp

        # The unhealthy container is restarted: its start time moves on, more than once.
        container = await rig.container("web.api-2")
        first_start = container.attrs["State"]["StartedAt"]

        async def restarted() -> bool:
            again = await rig.container("web.api-2")
            return bool(again.attrs["State"]["StartedAt"] != first_start)

        async with asyncio.timeout(30):
            while not await restarted():
                await asyncio.sleep(0.2)
        # The healthy one keeps its container and start time.
        await poll(lambda: rig.pods.workers["svc1/1"].health.probes >= 2)
        assert [h["status"] for h in rig.book.health if h["instance_number"] == 1] == ["healthy"]

        rig.book.pods = []
        await rig.nudge()
        await poll(lambda: not rig.pods.workers)
