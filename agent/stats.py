"""Node stats from /proc, statvfs and the Docker Engine (no cAdvisor).

The parsers take file contents as strings so tests can feed them literal samples.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from agent.docker_client import DockerApi

# Interfaces that carry container traffic on the node (bridges are also found via /sys).
_INTERNAL = re.compile(r"^(docker\d*|br-|veth|vethwe|weave|datapath|cni|flannel|cali|virbr|vxlan)")
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per key."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values


def memory_stats(meminfo_text: str) -> dict[str, int]:
    """The ``memory`` member of ``/nodes/stats`` (used = total - free, like the original)."""
    mem = parse_meminfo(meminfo_text)
    total, free = mem.get("MemTotal", 0), mem.get("MemFree", 0)
    return {
        "total": total,
        "used": total - free,
        "free": free,
        "active": mem.get("Active", 0),
        "inactive": mem.get("Inactive", 0),
        "cached": mem.get("Cached", 0),
        "buffers": mem.get("Buffers", 0),
    }


def load_stats(loadavg_text: str) -> dict[str, float]:
    """``/proc/loadavg`` as ``{"1m", "5m", "15m"}``."""
    one, five, fifteen = (float(v) for v in loadavg_text.split()[:3])
    return {"1m": one, "5m": five, "15m": fifteen}


class CpuTimes(NamedTuple):
    """Aggregate jiffies of the ``cpu`` line of /proc/stat."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        """All jiffies (guest time is already inside user/nice)."""
        return sum(self)


def parse_cpu(stat_text: str) -> tuple[CpuTimes, int]:
    """The aggregate CPU times and the number of cores in /proc/stat."""
    times: CpuTimes | None = None
    cores = 0
    for line in stat_text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu":
            numbers = [int(v) for v in fields[1:9]]
            times = CpuTimes(*(numbers + [0] * (8 - len(numbers))))
        elif fields[0].startswith("cpu") and fields[0][3:].isdigit():
            cores += 1
    if times is None:
        raise ValueError("no aggregate cpu line in /proc/stat")
    return times, cores


def cpu_stats(before: CpuTimes, after: CpuTimes, num_cores: int) -> dict[str, float]:
    """Percent of the interval spent in each state, over all cores."""
    delta = [max(0, b - a) for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    share = dict(zip(CpuTimes._fields, delta, strict=True))
    result: dict[str, float] = {"num_cores": num_cores}
    for name in ("system", "user", "nice", "idle", "steal", "iowait"):
        result[name] = round(100.0 * share[name] / total, 2) if total else 0.0
    return result


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` as ``{interface: (rx_bytes, tx_bytes)}``."""
    counters: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 9:
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def is_internal(interface: str, bridges: frozenset[str] = frozenset()) -> bool:
    """Container-side interfaces: docker0, Linux bridges, veth pairs and overlay devices."""
    return interface in bridges or bool(_INTERNAL.match(interface))


def network_stats(
    now: dict[str, tuple[int, int]],
    before: dict[str, tuple[int, int]] | None,
    seconds: float,
    bridges: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Totals per side; ``*_per_second`` over the interval (0 without a previous sample)."""
    sides: dict[str, Any] = {}
    for side in ("internal", "external"):
        names = sorted(
            n for n in now if n != "lo" and is_internal(n, bridges) == (side == "internal")
        )
        rx = sum(now[n][0] for n in names)
        tx = sum(now[n][1] for n in names)
        rx_before = sum(before[n][0] for n in names if n in before) if before else rx
        tx_before = sum(before[n][1] for n in names if n in before) if before else tx
        per = seconds if seconds > 0 else 1.0
        sides[side] = {
            "interfaces": names,
            "rx_bytes": rx,
            "tx_bytes": tx,
            "rx_bytes_per_second": round(max(0, rx - rx_before) / per, 2),
            "tx_bytes_per_second": round(max(0, tx - tx_before) / per, 2),
        }
    return sides


def filesystem_stats(
    path: str, statvfs: Callable[[str], os.statvfs_result] = os.statvfs
) -> list[dict[str, Any]]:
    """Size of the filesystem holding the Docker root dir (empty if it is not visible here)."""
    try:
        st = statvfs(path)
    except OSError:
        return []
    total = st.f_blocks * st.f_frsize
    return [
        {
            "name": path,
            "total": total,
            "used": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "free": st.f_bavail * st.f_frsize,
        }
    ]


def iso_now() -> str:
    """UTC now as ISO 8601 with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Sample:
    at: float
    cpu: CpuTimes
    net: dict[str, tuple[int, int]]


class StatsCollector:
    """Builds one ``/nodes/stats`` payload per call, as deltas since the previous call."""

    def __init__(
        self,
        docker: DockerApi,
        proc: Path = Path("/proc"),
        sys_net: Path = Path("/sys/class/net"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._docker = docker
        self._proc = proc
        self._sys_net = sys_net
        self._clock = clock
        self._last: _Sample | None = None

    def _bridges(self) -> frozenset[str]:
        try:
            return frozenset(p.parent.name for p in self._sys_net.glob("*/bridge"))
        except OSError:
            return frozenset()

    def _read(self, root_dir: str) -> tuple[dict[str, Any], _Sample, int, frozenset[str]]:
        cpu, cores = parse_cpu((self._proc / "stat").read_text())
        sample = _Sample(self._clock(), cpu, parse_net_dev((self._proc / "net/dev").read_text()))
        static = {
            "memory": memory_stats((self._proc / "meminfo").read_text()),
            "load": load_stats((self._proc / "loadavg").read_text()),
            "filesystem": filesystem_stats(root_dir),
        }
        return static, sample, cores, self._bridges()

    async def prime(self) -> None:
        """Take the baseline sample the first report is measured against."""
        _, self._last, _, _ = await asyncio.to_thread(self._read, "/")

    async def collect(self, root_dir: str) -> dict[str, Any]:
        """The stats payload for the interval since the previous call."""
        payload, sample, cores, bridges = await asyncio.to_thread(self._read, root_dir)
        last = self._last or sample
        seconds = sample.at - last.at
        self._last = sample
        running = await self._docker.running_containers()
        payload["cpu"] = cpu_stats(last.cpu, sample.cpu, cores)
        payload["network"] = network_stats(sample.net, last.net, seconds, bridges)
        payload["usage"] = {"container_seconds": round(running * seconds)}
        payload["time"] = iso_now()
        return payload
