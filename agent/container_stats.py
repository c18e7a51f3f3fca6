"""Containers and their stats for the master: ``/containers/save``, ``cleanup`` and ``stat``.

Every ``KONTENA_CONTAINER_STATS_INTERVAL`` seconds the agent lists every container of the
Engine (service pods and any other), saves those that are new or changed since the master last
accepted them on this connection, tells the master which still exist, and sends one
``/containers/stat`` notification holding a sample per running container. Samples come from
Docker's stats API (no cAdvisor); CPU and network rates are measured against the previous
sample of the same container, so they cover the whole interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from docker.errors import DockerException, InvalidVersion, NotFound

from agent.stats import iso_now

log = logging.getLogger(__name__)

SAVE_TIMEOUT = 30.0
# At most this many Docker calls (inspect, stats) at once: each holds a worker thread.
DOCKER_CONCURRENCY = 4
SIDES = ("internal", "external")
# Kontena's overlay interface inside a container; everything else is external traffic.
INTERNAL_PREFIX = "ethwe"

_STATE_KEYS = (
    "Running",
    "Paused",
    "Restarting",
    "OOMKilled",
    "Dead",
    "Pid",
    "ExitCode",
    "Error",
    "StartedAt",
    "FinishedAt",
)
_CONFIG_KEYS = ("Image", "Cmd", "Env", "Labels", "Hostname", "Domainname")


class ContainerApi(Protocol):
    """A low-level docker SDK call run off the event loop (agent.docker_client.DockerEngine)."""

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``docker.APIClient.<fn>(*args, **kwargs)`` in a worker thread."""
        ...


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def container_document(inspect: dict[str, Any]) -> dict[str, Any]:
    """The part of ``docker inspect`` the master stores (the container JSON of §2.13)."""
    config, state = _dict(inspect.get("Config")), _dict(inspect.get("State"))
    settings = _dict(inspect.get("NetworkSettings"))
    document_state = {key: state.get(key) for key in _STATE_KEYS}
    health = _dict(state.get("Health")).get("Status")
    if health:
        document_state["Health"] = {"Status": health}
    return {
        "Id": inspect.get("Id"),
        "Name": inspect.get("Name"),
        "Created": inspect.get("Created"),
        "Config": {key: config.get(key) for key in _CONFIG_KEYS},
        "State": document_state,
        "NetworkSettings": {
            "IPAddress": settings.get("IPAddress"),
            "Ports": settings.get("Ports"),
            "Networks": {
                name: {
                    "IPAddress": _dict(net).get("IPAddress"),
                    "Gateway": _dict(net).get("Gateway"),
                }
                for name, net in _dict(settings.get("Networks")).items()
            },
        },
        "Mounts": [
            {k: _dict(m).get(k) for k in ("Type", "Name", "Source", "Destination", "Mode", "RW")}
            for m in inspect.get("Mounts") or []
        ],
    }


def cpu_spec(inspect: dict[str, Any], online_cpus: int) -> dict[str, Any]:
    """``spec.cpu``: the CPU shares and the cpuset mask (``0-N`` for every core when unset)."""
    host = _dict(inspect.get("HostConfig"))
    mask = host.get("CpusetCpus") or (f"0-{online_cpus - 1}" if online_cpus > 1 else "0")
    return {"limit": host.get("CpuShares") or 1024, "mask": mask}


@dataclass
class Sample:
    """What the next sample of a container is measured against."""

    at: float
    cpu_total: int
    system: int
    network: dict[str, tuple[int, int]]


def _online_cpus(cpu_stats: dict[str, Any]) -> int:
    online = cpu_stats.get("online_cpus")
    if isinstance(online, int) and online > 0:
        return online
    per_cpu = _dict(cpu_stats.get("cpu_usage")).get("percpu_usage") or []
    return max(1, len(per_cpu))


def _cpu_counters(cpu_stats: dict[str, Any]) -> tuple[int, int]:
    total = _dict(cpu_stats.get("cpu_usage")).get("total_usage")
    system = cpu_stats.get("system_cpu_usage")
    return (int(total or 0), int(system or 0))


def cpu_percent(before: tuple[int, int], after: tuple[int, int], online_cpus: int) -> float:
    """Percent of one core used between two samples, as ``docker stats`` computes it."""
    cpu_delta, system_delta = after[0] - before[0], after[1] - before[1]
    if cpu_delta < 0 or system_delta <= 0:
        return 0.0
    return round(100.0 * cpu_delta / system_delta * online_cpus, 2)


def network_counters(raw: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``{interface: (rx_bytes, tx_bytes)}`` of a stats answer (empty for ``--net host``)."""
    return {
        str(name): (int(_dict(c).get("rx_bytes") or 0), int(_dict(c).get("tx_bytes") or 0))
        for name, c in _dict(raw.get("networks")).items()
    }


def network_document(
    now: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]] | None, seconds: float
) -> dict[str, Any]:
    """Totals and per-second rates per side, the shape of Kontena's container stats."""
    sides: dict[str, Any] = {}
    for side in SIDES:
        names = sorted(n for n in now if n.startswith(INTERNAL_PREFIX) == (side == "internal"))
        rx, tx = sum(now[n][0] for n in names), sum(now[n][1] for n in names)
        previous = before or {}
        rx_before = sum(previous.get(n, now[n])[0] for n in names)
        tx_before = sum(previous.get(n, now[n])[1] for n in names)
        per = seconds if before is not None and seconds > 0 else 0.0
        sides[side] = {
            "interfaces": names,
            "rx_bytes": rx,
            "tx_bytes": tx,
            "rx_bytes_per_second": round(max(0, rx - rx_before) / per, 2) if per else 0.0,
            "tx_bytes_per_second": round(max(0, tx - tx_before) / per, 2) if per else 0.0,
        }
    return sides


def memory_document(memory_stats: dict[str, Any]) -> dict[str, Any]:
    """Usage and working set (usage without inactive page cache, cgroup v1 or v2)."""
    usage = int(memory_stats.get("usage") or 0)
    details = _dict(memory_stats.get("stats"))
    inactive = details.get("inactive_file", details.get("total_inactive_file")) or 0
    return {"usage": usage, "working_set": max(0, usage - int(inactive))}


def stat_document(
    container_id: str,
    raw: dict[str, Any],
    cpu: dict[str, Any],
    previous: Sample | None,
    now: float,
) -> tuple[dict[str, Any], Sample]:
    """One ``/containers/stat`` sample from a Docker stats answer; also the next baseline."""
    cpu_stats = _dict(raw.get("cpu_stats"))
    online = _online_cpus(cpu_stats)
    counters = _cpu_counters(cpu_stats)
    network = network_counters(raw)
    if previous is not None:
        before: tuple[int, int] | None = (previous.cpu_total, previous.system)
    else:
        # The first sample of a container: Docker's own previous reading, when it took one.
        pre = _dict(raw.get("precpu_stats"))
        before = _cpu_counters(pre) if pre.get("system_cpu_usage") else None
    memory_stats = _dict(raw.get("memory_stats"))
    document = {
        "id": container_id,
        "spec": {"cpu": cpu, "memory": {"limit": memory_stats.get("limit")}},
        "cpu": {
            "usage": counters[0] - before[0] if before else 0,
            "usage_pct": cpu_percent(before, counters, online) if before else 0.0,
        },
        "memory": memory_document(memory_stats),
        "network": network_document(
            network, previous.network if previous else None, now - previous.at if previous else 0
        ),
        "time": iso_now(),
    }
    return document, Sample(now, counters[0], counters[1], network)


@dataclass
class ContainerReport:
    """One period's messages: containers to save, the ids that exist, the stats samples."""

    changed: list[dict[str, Any]] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)


class ContainerReporter:
    """Builds a :class:`ContainerReport` per period; lives as long as the agent."""

    def __init__(self, api: ContainerApi, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self._clock = clock
        self._samples: dict[str, Sample] = {}
        # The documents the master accepted on the current connection (reset on reconnect).
        self.saved: dict[str, dict[str, Any]] = {}
        self._gate = asyncio.Semaphore(DOCKER_CONCURRENCY)
        self._one_shot = True

    async def _docker(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await self.api.call(fn, *args, **kwargs)

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._docker("inspect_container", container_id)
        except NotFound:
            return None  # removed between the list and now
        except DockerException as exc:
            # One container Docker cannot describe must not hold up the others' reports.
            log.warning("inspecting container %s failed: %s", container_id[:12], exc)
            return None
        return result

    async def _read_stats(self, container_id: str, one_shot: bool) -> dict[str, Any]:
        if one_shot and self._one_shot:
            try:
                result: dict[str, Any] = await self._docker(
                    "stats", container_id, stream=False, one_shot=True
                )
                return result
            except InvalidVersion:
                self._one_shot = False  # Engine API < 1.41: Docker's ~1 s sample every time
        answer: dict[str, Any] = await self._docker("stats", container_id, stream=False)
        return answer

    async def _stats(self, container_id: str, inspect: dict[str, Any]) -> dict[str, Any] | None:
        previous = self._samples.get(container_id)
        try:
            # one_shot answers at once; without a baseline of ours Docker's ~1 s sample is used.
            raw = await self._read_stats(container_id, one_shot=previous is not None)
        except NotFound:
            return None
        except DockerException as exc:
            log.warning("stats of container %s failed: %s", container_id[:12], exc)
            return None
        cpu = cpu_spec(inspect, _online_cpus(_dict(raw.get("cpu_stats"))))
        document, sample = stat_document(container_id, raw, cpu, previous, self._clock())
        self._samples[container_id] = sample
        return document

    async def collect(self) -> ContainerReport:
        """List, inspect and sample every container of the Engine."""
        summaries = await self._docker("containers", all=True)
        ids = [str(s["Id"]) for s in summaries if s.get("Id")]
        inspected = await asyncio.gather(*(self._inspect(cid) for cid in ids))
        found = {cid: data for cid, data in zip(ids, inspected, strict=True) if data is not None}
        running = [cid for cid, data in found.items() if _dict(data.get("State")).get("Running")]
        samples = await asyncio.gather(*(self._stats(cid, found[cid]) for cid in running))
        for gone in set(self._samples) - set(running):
            del self._samples[gone]
        report = ContainerReport(present=list(found))
        for cid, data in found.items():
            document = container_document(data)
            report.documents[cid] = document
            if self.saved.get(cid) != document:
                report.changed.append(document)
        report.stats = [s for s in samples if s is not None]
        return report
