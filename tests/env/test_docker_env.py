"""The test environment's Docker daemons are real, distinct nodes that run busybox services."""

from __future__ import annotations

import time

import docker
import httpx
import pytest

from tests.fixtures.docker import NODE_LABEL, TEST_LABEL, missing_service, remove_new, snapshot
from tests.fixtures.server import free_port


def test_daemons_are_distinct_labelled_nodes(
    docker_clients: list[docker.DockerClient], busybox_image: str
) -> None:
    """Each daemon answers info() with its own data root and its node label."""
    assert len(docker_clients) >= 2
    infos = [client.info() for client in docker_clients]
    roots = [info["DockerRootDir"] for info in infos]
    assert len(set(roots)) == len(roots)
    for number, info in enumerate(infos, start=1):
        assert f"{NODE_LABEL}=node{number}" in info["Labels"]
        assert info["ServerVersion"]
    for client in docker_clients:
        assert client.images.get(busybox_image).attrs["Config"]["Cmd"] == ["/bin/sh"]


def _get_until(url: str, deadline: float = 15.0) -> httpx.Response:
    """GET ``url`` until it answers (the container needs a moment to bind its port)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("node", [0, 1], ids=["node1", "node2"])
def test_busybox_httpd_published_on_loopback(
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    cleanup_containers: dict[str, str],
    node: int,
) -> None:
    """A busybox httpd container publishes a loopback port that answers the test."""
    client = docker_clients[node]
    port = free_port()
    page = f"hello-node{node + 1}"
    script = f"mkdir /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"
    container = client.containers.run(
        busybox_image,
        ["sh", "-c", script],
        detach=True,
        init=True,  # stops in ~0.1 s instead of waiting for the stop timeout
        labels=cleanup_containers,
        ports={"8080/tcp": ("127.0.0.1", port)},
    )
    response = _get_until(f"http://127.0.0.1:{port}/index.html")
    assert response.status_code == 200
    assert response.text == f"{page}\n"
    container.reload()
    assert container.status == "running"
    assert container.labels[TEST_LABEL] == cleanup_containers[TEST_LABEL]


def test_cleanup_removes_what_a_test_created(
    docker_clients: list[docker.DockerClient], busybox_image: str
) -> None:
    """The per-test cleanup removes labelled containers and anything new (networks too)."""
    client = docker_clients[0]
    before = snapshot(client)
    labelled = client.containers.run(
        busybox_image, ["sleep", "60"], detach=True, init=True, labels={TEST_LABEL: "this-test"}
    )
    unlabelled = client.containers.create(busybox_image, ["true"])
    network = client.networks.create("kt-cleanup-test")
    volume = client.volumes.create("kt-cleanup-test")

    assert remove_new(client, before, "this-test") >= 2

    after = snapshot(client)
    assert labelled.id not in after.containers
    assert unlabelled.id not in after.containers
    assert network.id not in after.networks
    assert volume.name not in after.volumes


def test_missing_daemons_skip_locally_but_fail_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without daemons a docker test skips, except under CI=true where it fails."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no daemons"):
        missing_service("no daemons")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no daemons"):
        missing_service("no daemons")
