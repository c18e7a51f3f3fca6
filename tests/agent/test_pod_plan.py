"""The pure reconciliation rules and the container spec, table-driven (no Docker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.pod_docker import create_args, host_config_args, pod_env, pod_labels
from agent.pod_plan import (
    Action,
    ContainerFacts,
    decide,
    image_check_needed,
    observed_state,
    parse_docker_time,
    pod_id_of,
)
from core.protocol import PodPort, PodVolume, ServicePod

P, S, R, C, ST, RS = (
    Action.PULL,
    Action.STOP,
    Action.REMOVE,
    Action.CREATE,
    Action.START,
    Action.RESTART,
)


def make_pod(**overrides: Any) -> ServicePod:
    """A running pod of web.api instance 2 at service revision 3."""
    values: dict[str, Any] = {
        "id": "svc1/2",
        "service_id": "svc1",
        "service_name": "web.api",
        "instance_number": 2,
        "desired_state": "running",
        "deploy_rev": "rev-b",
        "service_revision": 3,
        "image_name": "local/busybox:latest",
        "grid_name": "g1",
        "stack_name": "web",
    }
    values.update(overrides)
    return ServicePod(**values)


def facts(**overrides: Any) -> ContainerFacts:
    """A running container made for make_pod()'s revision and deploy."""
    labels = {
        "io.kontena.service.id": "svc1",
        "io.kontena.service.instance_number": "2",
        "io.kontena.service.revision": "3",
        "io.kontena.container.deploy_rev": "rev-b",
    }
    labels.update(overrides.pop("labels", {}))
    values: dict[str, Any] = {
        "id": "c1",
        "name": "web.api-2",
        "status": "running",
        "image_name": "local/busybox:latest",
        "image_id": "sha256:aaa",
        "labels": labels,
    }
    values.update(overrides)
    return ContainerFacts(**values)


REV = "io.kontena.service.revision"

DECISIONS: list[
    tuple[str, ServicePod | None, ContainerFacts | None, dict[str, Any], list[Action]]
] = [
    ("running, nothing there → create", make_pod(), None, {}, [P, C, ST]),
    ("running and up to date → nothing", make_pod(), facts(), {}, []),
    ("running, container exited → start", make_pod(), facts(status="exited"), {}, [ST]),
    ("running, container created → start", make_pod(), facts(status="created"), {}, [ST]),
    ("running, docker restarting it → wait", make_pod(), facts(status="restarting"), {}, []),
    (
        "older service revision → recreate",
        make_pod(),
        facts(labels={REV: "2"}),
        {},
        [P, S, R, C, ST],
    ),
    (
        "older revision, stopped → recreate without stop",
        make_pod(),
        facts(status="exited", labels={REV: "2"}),
        {},
        [P, R, C, ST],
    ),
    ("newer container revision → keep", make_pod(), facts(labels={REV: "4"}), {}, []),
    ("unlabelled revision → recreate", make_pod(), facts(labels={REV: "x"}), {}, [P, S, R, C, ST]),
    (
        "image name changed → recreate",
        make_pod(image_name="local/other:1"),
        facts(),
        {},
        [P, S, R, C, ST],
    ),
    (
        "same image id after a new deploy → keep",
        make_pod(),
        facts(),
        {"image_id": "sha256:aaa"},
        [],
    ),
    (
        "image id changed on a new deploy → recreate",
        make_pod(),
        facts(),
        {"image_id": "sha256:bbb"},
        [P, S, R, C, ST],
    ),
    ("dead container → recreate", make_pod(), facts(status="dead"), {}, [P, R, C, ST]),
    (
        "docker start error → recreate",
        make_pod(),
        facts(status="created", error="oci failed"),
        {},
        [P, R, C, ST],
    ),
    ("restart requested, running → restart", make_pod(), facts(), {"restart": True}, [RS]),
    (
        "restart requested, exited → start",
        make_pod(),
        facts(status="exited"),
        {"restart": True},
        [ST],
    ),
    ("stopped, running → stop", make_pod(desired_state="stopped"), facts(), {}, [S]),
    (
        "stopped, exited → nothing",
        make_pod(desired_state="stopped"),
        facts(status="exited"),
        {},
        [],
    ),
    ("stopped, nothing there → nothing", make_pod(desired_state="stopped"), None, {}, []),
    (
        "stopped, old revision → still just stop",
        make_pod(desired_state="stopped"),
        facts(labels={REV: "1"}),
        {},
        [S],
    ),
    (
        "terminated, running → stop and remove",
        make_pod(desired_state="terminated"),
        facts(),
        {},
        [S, R],
    ),
    (
        "terminated, exited → remove",
        make_pod(desired_state="terminated"),
        facts(status="exited"),
        {},
        [R],
    ),
    ("terminated, gone → nothing", make_pod(desired_state="terminated"), None, {}, []),
    ("unlisted, running → stop and remove", None, facts(), {}, [S, R]),
    ("unlisted, gone → nothing", None, None, {}, []),
    ("unknown desired state → nothing", make_pod(desired_state="initialized"), facts(), {}, []),
]


@pytest.mark.parametrize(
    ("pod", "container", "kwargs", "expected"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(
    pod: ServicePod | None,
    container: ContainerFacts | None,
    kwargs: dict[str, Any],
    expected: list[Action],
) -> None:
    assert decide(pod, container, **kwargs) == expected


@pytest.mark.parametrize(
    ("pod", "container", "checked", "expected"),
    [
        (make_pod(), facts(), None, False),  # same deploy_rev label
        (make_pod(deploy_rev="rev-c"), facts(), None, True),
        (make_pod(deploy_rev="rev-c"), facts(), "rev-c", False),  # already checked
        (make_pod(deploy_rev="rev-c"), None, None, False),  # creating pulls anyway
        (make_pod(deploy_rev="rev-c", desired_state="stopped"), facts(), None, False),
    ],
)
def test_image_check_needed(
    pod: ServicePod, container: ContainerFacts | None, checked: str | None, expected: bool
) -> None:
    assert image_check_needed(pod, container, checked) is expected


@pytest.mark.parametrize(
    ("desired", "container", "expected"),
    [
        ("running", facts(), "running"),
        ("running", facts(status="exited"), "stopped"),
        ("running", facts(status="created"), "stopped"),
        ("running", facts(status="restarting"), "restarting"),
        ("running", None, "missing"),
        ("stopped", facts(status="exited"), "stopped"),
        ("terminated", None, "terminated"),
    ],
)
def test_observed_state(desired: str, container: ContainerFacts | None, expected: str) -> None:
    assert observed_state(make_pod(desired_state=desired), container) == expected


def test_facts_from_inspect() -> None:
    data = {
        "Id": "abc",
        "Name": "/web.api-2",
        "Image": "sha256:aaa",
        "State": {"Status": "running", "Error": "", "StartedAt": "2024-05-01T10:00:00.123456789Z"},
        "Config": {"Image": "local/busybox:latest", "Labels": {REV: "3"}},
        "NetworkSettings": {"IPAddress": "", "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
    }
    got = ContainerFacts.from_inspect(data)
    assert (got.name, got.status, got.revision, got.ip) == ("web.api-2", "running", 3, "172.17.0.2")
    assert got.started_at == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_docker_time("0001-01-01T00:00:00Z") is None


def test_pod_id_of() -> None:
    assert (
        pod_id_of({"io.kontena.service.id": "s", "io.kontena.service.instance_number": "3"})
        == "s/3"
    )
    assert pod_id_of({"io.kontena.service.id": "s"}) is None
    assert pod_id_of({}) is None


def test_container_spec() -> None:
    pod = make_pod(
        cmd=["httpd", "-f"],
        env=["A=1", "KONTENA_NODE_NAME=custom"],
        ports=[PodPort(container_port=80, node_port=8080, ip="127.0.0.1")],
        labels={"io.kontena.service.id": "spoofed", "team": "x"},
        memory=64 * 1024 * 1024,
        cpus=0.5,
        cap_add=["NET_ADMIN"],
        log_driver="json-file",
        log_opts={"max-size": "1m"},
        stop_signal="SIGQUIT",
        hostname="api-2",
        user="nobody",
    )
    args = create_args(pod, "node-1")
    assert args["name"] == "web.api-2"
    assert args["command"] == ["httpd", "-f"]
    assert args["ports"] == [(80, "tcp")]
    assert (args["user"], args["hostname"], args["stop_signal"], args["stop_timeout"]) == (
        "nobody",
        "api-2",
        "SIGQUIT",
        10,
    )
    assert (
        pod_labels(pod)
        == args["labels"]
        == {
            "team": "x",
            "io.kontena.service.id": "svc1",
            "io.kontena.service.name": "api",
            "io.kontena.service.instance_number": "2",
            "io.kontena.container.deploy_rev": "rev-b",
            "io.kontena.service.revision": "3",
            "io.kontena.stack.name": "web",
            "io.kontena.grid.name": "g1",
        }
    )
    assert (
        pod_env(pod, "node-1")
        == args["environment"]
        == [
            "A=1",
            "KONTENA_NODE_NAME=custom",
            "KONTENA_SERVICE_ID=svc1",
            "KONTENA_SERVICE_NAME=api",
            "KONTENA_GRID_NAME=g1",
            "KONTENA_PLATFORM_NAME=g1",
            "KONTENA_STACK_NAME=web",
            "KONTENA_SERVICE_INSTANCE_NUMBER=2",
        ]
    )
    host = host_config_args(pod)
    assert host["port_bindings"] == {"80/tcp": [("127.0.0.1", 8080)]}
    assert host["mem_limit"] == 64 * 1024 * 1024
    assert host["nano_cpus"] == 500_000_000
    assert host["cap_add"] == ["NET_ADMIN"]
    assert host["log_config"] == {"type": "json-file", "config": {"max-size": "1m"}}
    assert host["restart_policy"] == {"Name": "unless-stopped"}
    assert host["init"] is True
    assert host["network_mode"] == "bridge"
    assert "memswap_limit" not in host and "pid_mode" not in host


def test_host_network_drops_hostname() -> None:
    assert "hostname" not in create_args(make_pod(net="host", hostname="x"), "n")
    assert (
        create_args(make_pod(service_name="solo", stack_name="null"), "n")["labels"][
            "io.kontena.service.name"
        ]
        == "solo"
    )


def test_volumes_and_domainname() -> None:
    pod = make_pod(
        domainname="web.g1.kontena.local",
        volumes=[
            PodVolume(path="/data"),
            PodVolume(path="/named", name="cache", flags="ro", driver="local"),
            PodVolume(path="/host", bind_mount="/srv/x"),
        ],
        volumes_from=["web.db-2"],
    )
    args = create_args(pod, "n")
    assert args["volumes"] == ["/data"]
    assert args["domainname"] == "web.g1.kontena.local"
    host = host_config_args(pod)
    assert host["binds"] == ["cache:/named:ro", "/srv/x:/host"]
    assert host["volumes_from"] == ["web.db-2"]
