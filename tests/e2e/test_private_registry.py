"""Pulls from a real private registry: Debian's ``docker-registry`` with htpasswd auth on loopback.

Without the grid's external registry entry the deploy fails naming the registry; with it the
agent pulls with the credentials and the service runs. Same setup as tests/e2e/test_deploy.py.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import dramatiq
import httpx
import pytest
from docker.errors import ImageNotFound

from models.db import Database
from tests.conftest import Caller
from tests.e2e import test_deploy
from tests.e2e.test_deploy import GRID, _service_id, containers, deployed
from tests.e2e.test_real_nodes import Agents, eventually, online
from tests.fixtures.docker import missing_service
from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow

runtime = test_deploy.runtime
worker = test_deploy.worker
agents = test_deploy.agents

REGISTRY_BIN = "/usr/bin/docker-registry"
USERNAME = "pusher"
PASSWORD = "registry-pass-1"


@dataclass
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:<port>``."""

    host: str

    @property
    def url(self) -> str:
        """The URL the external registry entry is created with."""
        return f"http://{self.host}"


def _answers(host: str) -> bool:
    """Does the registry answer /v2/ (401 without credentials counts)?"""
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """docker-registry on a free loopback port, htpasswd (bcrypt) auth, storage in tmp_path."""
    htpasswd = shutil.which("htpasswd")
    if not Path(REGISTRY_BIN).exists() or htpasswd is None:
        missing_service("docker-registry/htpasswd are not installed: run `bash tests/run.sh`")
    users = tmp_path / "htpasswd"
    hashed = subprocess.run(
        [htpasswd, "-nbB", USERNAME, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    users.write_text(hashed)
    host = f"127.0.0.1:{free_port()}"
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: {host}\n"
        f"auth:\n  htpasswd:\n    realm: kontena-test\n    path: {users}\n"
    )
    with (tmp_path / "registry.log").open("ab") as log:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        end = time.monotonic() + 15
        while not _answers(host):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(
                    f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()}"
                )
            time.sleep(0.05)
        yield Registry(host)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def remove_image(client: docker.DockerClient, image: str) -> None:
    """Untag ``image`` on the daemon (absent is fine)."""
    with contextlib.suppress(ImageNotFound):
        client.images.remove(image, force=True)


@pytest.fixture
def pushed(
    registry: Registry, docker_clients: list[docker.DockerClient], busybox_image: str
) -> Iterator[str]:
    """local busybox pushed as <registry>/busybox:test, then untagged on every daemon."""
    image = f"{registry.host}/busybox:test"
    node1 = docker_clients[0]
    node1.images.get(busybox_image).tag(f"{registry.host}/busybox", "test")
    # 127.0.0.0/8 registries are insecure (plain HTTP) by default in dockerd.
    lines = node1.images.push(
        f"{registry.host}/busybox",
        "test",
        auth_config={"username": USERNAME, "password": PASSWORD},
        stream=True,
        decode=True,
    )
    errors = [line["error"] for line in lines if "error" in line]
    assert not errors, errors
    for client in docker_clients:  # a deploy must pull it
        remove_image(client, image)
    yield image
    for client in docker_clients:
        remove_image(client, image)


async def deploy(client: httpx.AsyncClient, admin: Caller, service: str) -> dict[str, object]:
    """POST deploy and wait for it to finish."""
    response = await client.post(
        f"/v1/services/{GRID}/null/{service}/deploy", json={}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return await deployed(client, admin, service, response.json())


async def test_a_private_registry_image_pulls_only_with_the_grids_registry_credentials(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    worker: dramatiq.Worker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    registry: Registry,
    pushed: str,
    db: Database,
) -> None:
    grid = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    for index in range(2):
        agents.start(
            f"node-{index + 1}",
            docker_hosts[index],
            KONTENA_TOKEN=grid.json()["token"],
            KONTENA_POD_SYNC_INTERVAL="5",
        )
    await eventually(online(client, admin, "node-1", "node-2"), deadline=30, what="nodes online")

    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={"name": "private", "image": pushed, "stateful": False, "cmd": ["sleep", "3600"]},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text

    result = await deploy(client, admin, "private")
    assert result["state"] == "error", result
    reason = str(result["reason"])
    assert registry.host in reason, reason
    assert "pulling image" in reason, reason
    print(f"\nwithout credentials: {reason}")
    service_id = await _service_id(db, "private")
    assert containers(docker_clients, service_id) == {}

    added = await client.post(
        f"/v1/grids/{GRID}/external_registries",
        json={"url": registry.url, "username": USERNAME, "password": PASSWORD},
        headers=admin.headers,
    )
    assert added.status_code == 201, added.status_code
    assert added.json()["name"] == registry.host

    started = time.monotonic()
    result = await deploy(client, admin, "private")
    assert result["state"] == "success", result
    print(f"deploy with a pull from the private registry: {time.monotonic() - started:.2f} s")
    running = containers(docker_clients, service_id)
    assert sorted(running) == ["private-1"]
    (where,) = running["private-1"]
    pulled = docker_clients[int(where["daemon"])].images.get(pushed)
    assert f"{pushed}" in pulled.tags
