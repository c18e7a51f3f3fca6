"""Named volumes on a real Docker daemon: created with driver, options and labels; pruned.

The master side of the sync is a stand-in object answering ``/node_volumes/list`` (the e2e test
tests/e2e/test_volumes.py runs the real master); Docker is real.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import docker
import pytest

from agent.docker_client import DockerEngine
from agent.pod_docker import PodDocker, PodError
from agent.volumes import VolumeSync, ensure_volume
from core.protocol import VOLUME_LABEL_GRID, VOLUME_LABEL_ID, PodVolume, ServicePod


class ListingMaster:
    """Answers ``/node_volumes/list`` with a fixed list and counts the calls."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls: list[list[Any]] = []

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:
        assert method == "/node_volumes/list"
        self.calls.append(params)
        return {"volumes": [{"name": name} for name in self.names]}


@pytest.fixture
def engine(docker_hosts: list[str], docker_clients: list[docker.DockerClient]) -> Any:
    """The first daemon as the agent's engine (cleanup of new volumes comes with the clients)."""
    engine = DockerEngine(docker_hosts[0])
    yield engine
    engine.close()


def _volume(name: str, grid: str = "g1", **extra: Any) -> PodVolume:
    labels = {VOLUME_LABEL_ID: f"{grid}/data", VOLUME_LABEL_GRID: grid}
    return PodVolume(path="/data", name=name, driver="local", labels=labels, **extra)


async def test_missing_volume_is_created_with_driver_options_and_labels(
    engine: DockerEngine, docker_clients: list[docker.DockerClient]
) -> None:
    name = f"kt-{uuid.uuid4().hex[:8]}.data-1"
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    await ensure_volume(engine, _volume(name, driver_opts=opts))
    info = docker_clients[0].api.inspect_volume(name)
    assert info["Driver"] == "local"
    assert info["Options"] == opts
    assert info["Labels"][VOLUME_LABEL_ID] == "g1/data"
    # Present already: nothing changes, no error.
    await ensure_volume(engine, _volume(name, driver_opts=opts))


async def test_a_volume_of_another_driver_fails_the_pod(
    engine: DockerEngine, docker_clients: list[docker.DockerClient]
) -> None:
    name = f"kt-{uuid.uuid4().hex[:8]}"
    docker_clients[0].api.create_volume(name, driver="local")
    pod = ServicePod(
        id="s/1",
        service_id="s",
        service_name="s",
        instance_number=1,
        desired_state="running",
        deploy_rev="r",
        service_revision=1,
        image_name="x",
        grid_name="g1",
        volumes=[PodVolume(path="/d", name=name, driver="rexray")],
    )
    with pytest.raises(PodError, match=f"volume {name} exists with driver local, not rexray"):
        await PodDocker(engine).ensure_volumes(pod)


async def test_sync_removes_only_this_grids_unlisted_labelled_volumes(
    engine: DockerEngine, docker_clients: list[docker.DockerClient]
) -> None:
    api = docker_clients[0].api
    tag = uuid.uuid4().hex[:8]
    kept, gone, foreign, plain = (f"kt-{tag}-{n}" for n in ("kept", "gone", "foreign", "plain"))
    await ensure_volume(engine, _volume(kept))
    await ensure_volume(engine, _volume(gone))
    await ensure_volume(engine, _volume(foreign, grid="g2"))
    api.create_volume(plain, labels={VOLUME_LABEL_GRID: "g1"})  # not a grid volume of ours
    master = ListingMaster([kept])
    sync = VolumeSync(master, engine, "NODE", lambda: "g1")
    assert await sync.notify_update() == {}
    async with asyncio.timeout(30):
        while sync._task is not None and not sync._task.done():
            await asyncio.sleep(0.05)
    names = {v["Name"] for v in api.volumes()["Volumes"] or []}
    assert master.calls == [["NODE"]]
    assert {kept, foreign, plain} <= names
    assert gone not in names
    # Without node info (grid unknown) nothing is removed and the master is not asked.
    await ensure_volume(engine, _volume(gone))
    assert await VolumeSync(master, engine, "NODE", lambda: None).sync() == []
    assert gone in {v["Name"] for v in api.volumes()["Volumes"] or []}
