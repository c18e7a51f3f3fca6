"""Parsing /proc files (literal samples) and building the /nodes/stats payload."""

# The /proc/net/dev sample keeps the kernel's real (wide) layout.
# ruff: noqa: E501

from __future__ import annotations

import os
from pathlib import Path

from agent.stats import (
    CpuTimes,
    StatsCollector,
    cpu_stats,
    filesystem_stats,
    is_internal,
    load_stats,
    memory_stats,
    network_stats,
    parse_cpu,
    parse_net_dev,
)
from tests.agent.fakes import FakeDocker

MEMINFO = """\
MemTotal:        4028440 kB
MemFree:          216212 kB
MemAvailable:    2871944 kB
Buffers:          104932 kB
Cached:          2464572 kB
SwapCached:            0 kB
Active:          1791344 kB
Inactive:        1649016 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

LOADAVG = "0.52 0.58 0.59 2/467 12345\n"

STAT_BEFORE = """\
cpu  10000 500 3000 80000 1000 0 200 300 0 0
cpu0 5000 250 1500 40000 500 0 100 150 0 0
cpu1 5000 250 1500 40000 500 0 100 150 0 0
intr 123456 0 0
ctxt 987654
btime 1700000000
"""

# +1000 jiffies: user 300, nice 0, system 100, idle 500, iowait 50, softirq 0, steal 50.
STAT_AFTER = """\
cpu  10300 500 3100 80500 1050 0 200 350 0 0
cpu0 5150 250 1550 40250 525 0 100 175 0 0
cpu1 5150 250 1550 40250 525 0 100 175 0 0
intr 123999 0 0
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0
  eth0: 1000000    2000    0    0    0     0          0         0   500000    1500    0    0    0     0       0          0
  eth1:    2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0
docker0:   4000      40    0    0    0     0          0         0     6000      60    0    0    0     0       0          0
vethab12:   100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
 ktbr1:     700       7    0    0    0     0          0         0      900       9    0    0    0     0       0          0
"""


def test_memory_in_bytes() -> None:
    assert memory_stats(MEMINFO) == {
        "total": 4028440 * 1024,
        "used": (4028440 - 216212) * 1024,
        "free": 216212 * 1024,
        "active": 1791344 * 1024,
        "inactive": 1649016 * 1024,
        "cached": 2464572 * 1024,
        "buffers": 104932 * 1024,
    }


def test_load_averages() -> None:
    assert load_stats(LOADAVG) == {"1m": 0.52, "5m": 0.58, "15m": 0.59}


def test_cpu_times_and_cores() -> None:
    times, cores = parse_cpu(STAT_BEFORE)
    assert cores == 2
    assert times == CpuTimes(10000, 500, 3000, 80000, 1000, 0, 200, 300)
    assert times.total == 95000


def test_cpu_percent_over_the_interval() -> None:
    before, _ = parse_cpu(STAT_BEFORE)
    after, cores = parse_cpu(STAT_AFTER)
    assert cpu_stats(before, after, cores) == {
        "num_cores": 2,
        "system": 10.0,
        "user": 30.0,
        "nice": 0.0,
        "idle": 50.0,
        "steal": 5.0,
        "iowait": 5.0,
    }


def test_cpu_without_elapsed_jiffies_is_zero() -> None:
    times, _ = parse_cpu(STAT_BEFORE)
    assert cpu_stats(times, times, 2)["user"] == 0.0


def test_cpu_line_with_old_kernel_columns() -> None:
    times, cores = parse_cpu("cpu 1 2 3 4\ncpu0 1 2 3 4\n")
    assert times == CpuTimes(1, 2, 3, 4, 0, 0, 0, 0)
    assert cores == 1


def test_net_dev_counters() -> None:
    counters = parse_net_dev(NET_DEV)
    assert counters["eth0"] == (1000000, 500000)
    assert counters["docker0"] == (4000, 6000)
    assert counters["ktbr1"] == (700, 900)
    assert set(counters) == {"lo", "eth0", "eth1", "docker0", "vethab12", "ktbr1"}


def test_internal_interfaces() -> None:
    assert is_internal("docker0")
    assert is_internal("br-0a1b2c")
    assert is_internal("veth1234")
    assert is_internal("weave")
    assert is_internal("ktbr1", frozenset({"ktbr1"}))
    assert not is_internal("eth0")
    assert not is_internal("ens3")


def test_network_split_and_rates() -> None:
    now = parse_net_dev(NET_DEV)
    before = {name: (rx - 100, tx - 50) for name, (rx, tx) in now.items()}
    stats = network_stats(now, before, 10.0, frozenset({"ktbr1"}))
    assert stats["internal"] == {
        "interfaces": ["docker0", "ktbr1", "vethab12"],
        "rx_bytes": 4800,
        "tx_bytes": 7100,
        "rx_bytes_per_second": 30.0,
        "tx_bytes_per_second": 15.0,
    }
    assert stats["external"]["interfaces"] == ["eth0", "eth1"]
    assert (stats["external"]["rx_bytes"], stats["external"]["tx_bytes"]) == (1002000, 503000)
    assert stats["external"]["rx_bytes_per_second"] == 20.0


def test_network_without_previous_sample_has_zero_rates() -> None:
    stats = network_stats(parse_net_dev(NET_DEV), None, 0.0)
    assert stats["external"]["rx_bytes_per_second"] == 0.0


def test_filesystem_of_the_docker_root() -> None:
    def fake_statvfs(path: str) -> os.statvfs_result:
        assert path == "/var/lib/docker"
        # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax
        return os.statvfs_result((4096, 4096, 1000, 300, 250, 0, 0, 0, 0, 255))

    assert filesystem_stats("/var/lib/docker", fake_statvfs) == [
        {"name": "/var/lib/docker", "total": 4096000, "used": 700 * 4096, "free": 250 * 4096}
    ]
    assert filesystem_stats("/definitely/not/here") == []


async def test_collector_reports_deltas_since_the_previous_sample(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "loadavg").write_text(LOADAVG)
    (proc / "stat").write_text(STAT_BEFORE)
    (proc / "net/dev").write_text(NET_DEV)
    sys_net = tmp_path / "sys"
    (sys_net / "ktbr1/bridge").mkdir(parents=True)
    ticks = iter([100.0, 130.0])
    collector = StatsCollector(FakeDocker(running=4), proc, sys_net, clock=lambda: next(ticks))
    await collector.prime()
    (proc / "stat").write_text(STAT_AFTER)

    stats = await collector.collect(str(tmp_path))

    assert stats["memory"]["total"] == 4028440 * 1024
    assert stats["load"] == {"1m": 0.52, "5m": 0.58, "15m": 0.59}
    assert stats["cpu"]["user"] == 30.0
    assert "ktbr1" in stats["network"]["internal"]["interfaces"]
    assert stats["usage"] == {"container_seconds": 4 * 30}
    assert stats["filesystem"][0]["name"] == str(tmp_path)
    assert stats["time"].endswith("Z")
