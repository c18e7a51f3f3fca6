"""Container reports: the pure parts on literal Docker answers, then the agent on a real daemon.

The real-daemon test runs the agent in this process (build_agent with a ContainerReporter on a
DockerEngine) against the fake master of tests/agent/fake_master.py, which records what the
agent sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker
import pytest

from agent.container_stats import (
    ContainerReporter,
    Sample,
    container_document,
    cpu_percent,
    cpu_spec,
    memory_document,
    network_document,
    stat_document,
)
from agent.docker_client import DockerEngine
from agent.main import build_agent
from core.protocol import Notification, Request
from tests.agent.fake_master import fake_master
from tests.agent.test_agent_session import make_config, running_agent

INSPECT: dict[str, Any] = {
    "Id": "c0ffee",
    "Name": "/web.api-1",
    "Created": "2024-05-01T11:58:00.5Z",
    "Config": {
        "Image": "busybox:latest",
        "Cmd": ["httpd"],
        "Env": ["A=1"],
        "Labels": {"io.kontena.service.id": "svc1"},
        "Hostname": "api-1",
        "Domainname": "web.g1.kontena.local",
        "AttachStdin": False,
    },
    "State": {
        "Status": "running",
        "Running": True,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 42,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "2024-05-01T11:59:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
        "Health": {"Status": "healthy", "Log": ["a long log"]},
    },
    "HostConfig": {"CpuShares": 512, "CpusetCpus": "", "Binds": ["/a:/b"]},
    "GraphDriver": {"Data": {"MergedDir": "/var/lib/docker/overlay2/x"}},
    "NetworkSettings": {
        "IPAddress": "172.17.0.2",
        "Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]},
        "Networks": {"bridge": {"IPAddress": "172.17.0.2", "Gateway": "172.17.0.1", "Links": None}},
    },
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True}],
}

STATS_V2: dict[str, Any] = {
    "cpu_stats": {
        "cpu_usage": {"total_usage": 3_000_000_000},
        "system_cpu_usage": 200_000_000_000,
        "online_cpus": 4,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 2_000_000_000},
        "system_cpu_usage": 190_000_000_000,
        "online_cpus": 4,
    },
    "memory_stats": {"usage": 10_000, "limit": 4_000_000, "stats": {"inactive_file": 2_500}},
    "networks": {"eth0": {"rx_bytes": 1_000, "tx_bytes": 300}, "ethwe": {"rx_bytes": 7}},
}


def test_container_document_keeps_only_what_the_master_stores() -> None:
    document = container_document(INSPECT)
    assert document["Config"] == {
        "Image": "busybox:latest",
        "Cmd": ["httpd"],
        "Env": ["A=1"],
        "Labels": {"io.kontena.service.id": "svc1"},
        "Hostname": "api-1",
        "Domainname": "web.g1.kontena.local",
    }
    assert document["State"]["Health"] == {"Status": "healthy"}
    assert "Status" not in document["State"]
    assert document["NetworkSettings"]["Networks"] == {
        "bridge": {"IPAddress": "172.17.0.2", "Gateway": "172.17.0.1"}
    }
    assert document["Mounts"] == [
        {
            "Type": "volume",
            "Name": "data",
            "Source": None,
            "Destination": "/data",
            "Mode": None,
            "RW": True,
        }
    ]
    assert "HostConfig" not in document and "GraphDriver" not in document


def test_cpu_is_docker_stats_percent_and_the_mask_covers_every_core() -> None:
    assert cpu_percent((2_000, 190_000), (3_000, 200_000), 4) == 40.0
    assert cpu_percent((5, 100), (4, 200), 4) == 0.0  # a counter that went back (restart)
    assert cpu_percent((1, 100), (2, 100), 4) == 0.0
    assert cpu_spec(INSPECT, 4) == {"limit": 512, "mask": "0-3"}
    pinned = {"HostConfig": {"CpusetCpus": "1,3"}}
    assert cpu_spec(pinned, 4) == {"limit": 1024, "mask": "1,3"}
    assert cpu_spec({}, 1) == {"limit": 1024, "mask": "0"}


def test_memory_working_set_on_cgroup_v1_and_v2() -> None:
    assert memory_document(STATS_V2["memory_stats"]) == {"usage": 10_000, "working_set": 7_500}
    v1 = {"usage": 10_000, "stats": {"total_inactive_file": 4_000}}
    assert memory_document(v1) == {"usage": 10_000, "working_set": 6_000}
    assert memory_document({}) == {"usage": 0, "working_set": 0}


def test_network_sides_and_rates() -> None:
    now = {"eth0": (1_000, 300), "ethwe": (7, 0)}
    before = {"eth0": (400, 100), "ethwe": (7, 0)}
    sides = network_document(now, before, 60.0)
    assert sides["external"] == {
        "interfaces": ["eth0"],
        "rx_bytes": 1_000,
        "tx_bytes": 300,
        "rx_bytes_per_second": 10.0,
        "tx_bytes_per_second": 3.33,
    }
    assert sides["internal"]["interfaces"] == ["ethwe"]
    assert sides["internal"]["rx_bytes_per_second"] == 0.0
    first = network_document(now, None, 0)
    assert first["external"]["rx_bytes_per_second"] == 0.0
    assert network_document({}, None, 0)["external"]["interfaces"] == []


def test_stat_document_first_from_dockers_sample_then_from_ours() -> None:
    cpu = {"limit": 1024, "mask": "0-3"}
    document, baseline = stat_document("c0ffee", STATS_V2, cpu, None, now=100.0)
    assert document["id"] == "c0ffee"
    assert document["spec"] == {"cpu": cpu, "memory": {"limit": 4_000_000}}
    assert document["cpu"] == {"usage": 1_000_000_000, "usage_pct": 40.0}
    assert document["memory"] == {"usage": 10_000, "working_set": 7_500}
    assert document["network"]["external"]["rx_bytes"] == 1_000
    assert baseline == Sample(
        100.0, 3_000_000_000, 200_000_000_000, {"eth0": (1_000, 300), "ethwe": (7, 0)}
    )

    later = {
        **STATS_V2,
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_500_000_000},
            "system_cpu_usage": 210_000_000_000,
            "online_cpus": 4,
        },
        "precpu_stats": {},  # one_shot answers carry no previous reading
        "networks": {"eth0": {"rx_bytes": 1_600, "tx_bytes": 300}},
    }
    document, _ = stat_document("c0ffee", later, cpu, baseline, now=160.0)
    assert document["cpu"] == {"usage": 500_000_000, "usage_pct": 20.0}
    assert document["network"]["external"]["rx_bytes_per_second"] == 10.0
    one_shot_first, _ = stat_document("c0ffee", later, cpu, None, now=1.0)
    assert one_shot_first["cpu"] == {"usage": 0, "usage_pct": 0.0}


async def test_agent_saves_samples_and_cleans_up_real_containers(
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    cleanup_containers: dict[str, str],
) -> None:
    client = docker_clients[0]
    sleeper = client.containers.run(
        busybox_image,
        ["sleep", "300"],
        detach=True,
        name="stats-sleeper",
        labels=cleanup_containers,
    )
    stopped = client.containers.create(
        busybox_image, ["true"], name="stats-stopped", labels=cleanup_containers
    )
    engine = DockerEngine(docker_hosts[0])
    replies = {"/nodes/update": {}, "/containers/save": {}, "/containers/cleanup": {}}
    try:
        async with fake_master(replies) as master:
            config = make_config(
                master.url,
                docker_host=docker_hosts[0],
                stats_interval=3600,
                container_stats_interval=0.3,
            )
            agent = build_agent(config, engine, containers=ContainerReporter(engine))
            async with running_agent(agent):
                conn = await master.accept()
                await conn.notify("/agent/master_info", [{"version": "1.5.2"}])
                saved: dict[str, Any] = {}
                while {"stats-sleeper", "stats-stopped"} - set(saved):
                    save: Request = await conn.next_frame(Request, "/containers/save")
                    [body] = save.params
                    saved[body["container"]["Name"].lstrip("/")] = body
                assert saved["stats-sleeper"]["node"] == "AAAA:BBBB:CCCC:DDDD"
                document = saved["stats-sleeper"]["container"]
                assert document["Id"] == sleeper.id
                assert document["State"]["Running"] is True
                assert document["Config"]["Labels"] == cleanup_containers
                assert saved["stats-stopped"]["container"]["State"]["Running"] is False

                cleanup: Request = await conn.next_frame(Request, "/containers/cleanup")
                assert cleanup.params[0] == "AAAA:BBBB:CCCC:DDDD"
                assert {sleeper.id, stopped.id} <= set(cleanup.params[1])
                stat: Notification = await conn.next_frame(Notification, "/containers/stat")
                samples = {s["id"]: s for s in stat.params}
                assert stopped.id not in samples  # only running containers have stats
                sample = samples[sleeper.id]
                assert sample["memory"]["usage"] > 0
                assert sample["spec"]["memory"]["limit"] > 0
                assert sample["spec"]["cpu"]["limit"] == 1024
                assert set(sample["network"]) == {"internal", "external"}

                # Nothing changed: the next period sends stats but no save; a removal shows
                # in the next cleanup and the container's save comes again after a restart.
                second: Notification = await conn.next_frame(Notification, "/containers/stat")
                assert sleeper.id in {s["id"] for s in second.params}
                await asyncio.to_thread(stopped.remove)
                while True:
                    frame = await conn.next_frame(Request)
                    if frame.method == "/containers/save":
                        pytest.fail(f"unchanged container saved again: {frame.params}")
                    if frame.method == "/containers/cleanup" and stopped.id not in frame.params[1]:
                        break
                await asyncio.to_thread(sleeper.stop, timeout=1)
                while True:
                    save = await conn.next_frame(Request, "/containers/save")
                    if save.params[0]["container"]["Id"] == sleeper.id:
                        assert save.params[0]["container"]["State"]["Running"] is False
                        break
    finally:
        engine.close()
