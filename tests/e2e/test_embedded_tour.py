"""[F3] embedded mode: the README tour's service commands, against `up` and a real Docker daemon.

`kontena-master up` runs with DOCKER_HOST at this run's first test daemon, so its local agent
joins that Engine to the grid ``default``; then the tour's requests (same paths and bodies as
its curl lines, with the local busybox image serving HTTP instead of nginx) create, deploy,
inspect and remove a service, checked in Docker and over HTTP.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import pytest

from core.protocol import POD_LABEL_GRID, POD_LABEL_SERVICE_NAME
from tests.e2e.test_embedded_agent import up
from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")
SERVICE = "/v1/services/default/null/web"
# A line on stdout first, so the tour's container_logs request has something to show.
HTTPD = (
    "echo serving web-$KONTENA_SERVICE_INSTANCE_NUMBER"
    " && mkdir -p /www && echo hello-from-the-tour > /www/index.html"
    " && exec httpd -f -p 8080 -h /www"
)


def poll(check: Callable[[], T | None], deadline: float, what: str) -> T:
    """Call ``check`` until it returns something other than None/False; fail at the deadline."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = check()
        except httpx.TransportError:
            value = None  # the API is not listening yet
        if value is not None and value is not False:
            return value
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline} s")
        time.sleep(0.1)


def http_body(port: int) -> str | None:
    """GET / on 127.0.0.1:port, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return str(reply.read().decode().strip())
    except OSError:
        return None


def web_containers(client: docker.DockerClient) -> list[Any]:
    """The tour service's containers on the daemon (running or not)."""
    labels = [f"{POD_LABEL_GRID}=default", f"{POD_LABEL_SERVICE_NAME}=web"]
    return list(client.containers.list(all=True, filters={"label": labels}, ignore_removed=True))


def test_the_readme_tour_deploys_a_service_on_the_local_docker(
    tmp_path: Path,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
) -> None:
    started = time.monotonic()
    data_dir, port, web_port = tmp_path / "data", free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    docker_client = docker_clients[0]
    # The local agent inherits `up`'s environment: container reports every second, not 60.
    with up(
        data_dir, port, DOCKER_HOST=docker_hosts[0], KONTENA_CONTAINER_STATS_INTERVAL="1"
    ) as proc:
        token_file = data_dir / "admin.token"
        poll(token_file.exists, deadline=30, what="admin token written")
        # The tour's k(): bearer token from the data dir, JSON content type.
        k = httpx.Client(
            base_url=api,
            headers={
                "Authorization": f"Bearer {token_file.read_text().strip()}",
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        with k:
            poll(lambda: k.get("/v1/ping").json() == {"message": "pong"}, 30, "ping")

            # k $API/v1/grids/default/nodes: `up` joined the local Engine as a node.
            def node_online() -> dict[str, Any] | None:
                listed = k.get("/v1/grids/default/nodes").json()["nodes"]
                return next((n for n in listed if n["connected"] and n["updated"]), None)

            node = poll(node_online, deadline=30, what="local node online")
            assert node["docker_version"] == docker_client.version()["Version"]

            # k -d '{"name":"web",...}' $API/v1/grids/default/services
            created = k.post(
                "/v1/grids/default/services",
                json={
                    "name": "web",
                    "image": busybox_image,
                    "stateful": False,
                    "instances": 1,
                    "cmd": ["/bin/sh", "-c", HTTPD],
                    "ports": [{"container_port": 8080, "node_port": web_port, "ip": "127.0.0.1"}],
                },
            )
            assert created.status_code == 201, created.text

            # k -X POST …/deploy (no body): a deploy object, polled by id.
            deploy = k.post(f"{SERVICE}/deploy")
            assert deploy.status_code == 200, deploy.text
            deploy_id = deploy.json()["id"]

            def finished() -> dict[str, Any] | None:
                body: dict[str, Any] = k.get(f"{SERVICE}/deploys/{deploy_id}").json()
                return body if body["state"] in ("success", "error") else None

            result = poll(finished, deadline=30, what="deploy finished")
            assert result["state"] == "success", result
            assert [d["id"] for d in k.get(f"{SERVICE}/deploys").json()["deploys"]] == [deploy_id]

            # In Docker, running, publishing the port; httpd answers on it.
            (container,) = web_containers(docker_client)
            assert container.name == "web-1" and container.status == "running"
            assert poll(lambda: http_body(web_port), 10, "httpd answers") == "hello-from-the-tour"

            # k $API/v1/services/default/null/web/containers: as the agent reports them.
            def reported() -> list[Any] | None:
                listed = k.get(f"{SERVICE}/containers").json()["containers"]
                return listed or None

            (listed,) = poll(reported, deadline=20, what="container reported")
            assert listed["name"] == "web-1"

            # k "$API/v1/grids/default/stats?sort=memory" and …/web/metrics answer.
            stats = k.get("/v1/grids/default/stats", params={"sort": "memory"})
            assert stats.status_code == 200, stats.text
            metrics = k.get(f"{SERVICE}/metrics")
            assert metrics.status_code == 200, metrics.text

            # k "$API/v1/services/default/null/web/event_logs" / "…/container_logs?limit=20"
            # The tour's comment: created, deploy requested, deployed.
            events = k.get(f"{SERVICE}/event_logs").json()["logs"]
            types = {e["type"] for e in events}
            assert {"service:create", "service:deploy_request", "service:deploy"} <= types
            assert any(e["message"].endswith("deployed") for e in events), events

            def logged() -> list[str] | None:
                logs = k.get(f"{SERVICE}/container_logs", params={"limit": 20}).json()["logs"]
                lines = [entry["data"] for entry in logs]
                return lines if "serving web-1" in lines else None

            poll(logged, deadline=20, what="container log line stored")

            # k -X DELETE …/web: {} at once, then its container is stopped and removed.
            removed = k.delete(SERVICE)
            assert removed.status_code == 200 and removed.json() == {}, removed.text
            poll(lambda: not web_containers(docker_client), 20, "container removed")
            poll(lambda: k.get(SERVICE).status_code == 404, 20, "service gone")
            assert http_body(web_port) is None

        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    print(f"\nREADME tour on the local Docker took {time.monotonic() - started:.1f} s")
