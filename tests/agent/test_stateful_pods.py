"""Stateful pods on a real Docker daemon: the data container keeps the data (reference §3.9).

Driven like tests/agent/test_pods_docker.py: an in-process agent on the real daemon, the fake
master serving the pod list.
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker
import msgspec
import pytest

from agent.pod_data import data_container_args, volumes_from
from agent.pod_docker import create_args, host_config_args
from core.protocol import ServicePod
from tests.agent.test_pods_docker import PodRig, make_pod, pod_rig, poll

# Keeps the first boot's stamp: a re-created container finds the file and does not overwrite it.
STAMP = "[ -f /data/first ] || date +%s%N > /data/first; exec sleep 3600"


def pod(**overrides: Any) -> ServicePod:
    """A stateful pod with one anonymous volume and one bind mount."""
    body = make_pod(
        "local/busybox:latest",
        stateful=True,
        volumes=[{"path": "/data"}, {"path": "/etc/x", "bind_mount": "/tmp"}],
        volumes_from=["other-1"],
    )
    body.update(overrides)
    return msgspec.convert(body, ServicePod)


def test_a_stateful_pod_mounts_its_data_container_instead_of_anonymous_volumes() -> None:
    stateful = pod()
    assert "volumes" not in create_args(stateful, "n1")
    assert host_config_args(stateful)["volumes_from"] == ["other-1", "web.api-1-volumes"]
    assert host_config_args(stateful)["binds"] == ["/tmp:/etc/x"]
    data = data_container_args(stateful)
    assert data["name"] == "web.api-1-volumes"
    assert data["volumes"] == ["/data"]
    assert data["labels"] == {
        "io.kontena.container.type": "volume",
        "io.kontena.volumes.pod": "svc1/1",
        "io.kontena.grid.name": "g1",
    }
    # Its labels are not a pod's: never mistaken for the pod's container or an orphan.
    assert "io.kontena.service.id" not in data["labels"]

    stateless = pod(stateful=False)
    assert create_args(stateless, "n1")["volumes"] == ["/data"]
    assert volumes_from(stateless) == ["other-1"]


async def stamp(rig: PodRig) -> str:
    """The first-boot stamp the pod's container sees in /data."""

    async def read() -> str:
        container = await rig.container("web.api-1")
        result = await asyncio.to_thread(container.exec_run, ["cat", "/data/first"])
        return str(result.output.decode().strip()) if result.exit_code == 0 else ""

    found = ""

    async def check() -> bool:
        nonlocal found
        found = await read()
        return bool(found)

    async with asyncio.timeout(30):
        while not await check():
            await asyncio.sleep(0.05)
    return found


@pytest.fixture
def rig_args(docker_hosts: list[str], docker_clients: list[docker.DockerClient]) -> Any:
    """The first daemon and its client."""
    return docker_hosts[0], docker_clients[0]


async def test_data_survives_a_re_create_and_goes_with_the_terminated_pod(
    rig_args: Any, busybox_image: str
) -> None:
    # A pre_start hook mounts what the pod mounts: on the first deploy the data container
    # must exist before the hook container, or Docker refuses the hook's volumes_from.
    seed = {"name": "seed", "type": "pre_start", "cmd": "echo seeded >> /data/seed"}
    common = {
        "stateful": True,
        "volumes": [{"path": "/data"}],
        "cmd": ["sh", "-c", STAMP],
        "hooks": [seed],
    }
    async with pod_rig(*rig_args) as rig:
        rig.book.pods = [make_pod(busybox_image, **common)]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-1", state="running")
        first = await rig.container("web.api-1")
        data = await rig.container("web.api-1-volumes")
        assert data is not None and data.status == "created"  # never started
        before = await stamp(rig)
        seeded = await asyncio.to_thread(first.exec_run, ["cat", "/data/seed"])
        assert seeded.output.decode().split() == ["seeded"]

        # A new revision re-creates the container; the data container and its volume stay.
        rig.book.pods = [make_pod(busybox_image, **common, deploy_rev="rev-2", service_revision=2)]
        await rig.nudge()
        await rig.book.wait_state(rev="rev-2", state="running")
        assert (await rig.container("web.api-1")).id != first.id
        assert (await rig.container("web.api-1-volumes")).id == data.id
        assert await stamp(rig) == before

        # Unlisted (not terminated): the container goes, its data stays.
        rig.book.pods = []
        await rig.nudge()
        await poll(lambda: _container_gone(rig), timeout=30)
        assert (await rig.container("web.api-1-volumes")).id == data.id

        # Terminated, its container already gone: the data container and the volume go.
        volume = data.attrs["Mounts"][0]["Name"]
        rig.book.pods = [
            make_pod(busybox_image, **common, deploy_rev="rev-3", desired_state="terminated")
        ]
        await rig.nudge()
        await poll(lambda: _gone(rig, volume), timeout=30)


def _container_gone(rig: PodRig) -> bool:
    return "web.api-1" not in {c.name for c in rig.client.containers.list(all=True)}


def _gone(rig: PodRig, volume: str) -> bool:
    client = rig.client
    names = {c.name for c in client.containers.list(all=True)}
    volumes = {v.name for v in client.volumes.list()}
    return not ({"web.api-1", "web.api-1-volumes"} & names) and volume not in volumes
