"""A stand-in Docker Engine for agent tests that are about the protocol, not about Docker.

The real-daemon test (test_real_docker.py) covers the DockerEngine wrapper itself.
"""

from __future__ import annotations

import copy
from typing import Any

SAMPLE_INFO: dict[str, Any] = {
    "ID": "XI4K:NPOL:EQJS:RSQN:ZGGY:SWOB:QY3C:X7C4:EJQZ:7MZ3:CDYS:5CCL",
    "Name": "engine-host",
    "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
    "KernelVersion": "6.1.0-18-amd64",
    "Driver": "overlay2",
    "DockerRootDir": "/",
    "MemTotal": 4_100_000_000,
    "NCPU": 2,
    "ServerVersion": "20.10.24",
    "Labels": ["provider=test"],
    "Plugins": {
        "Volume": ["local"],
        "Network": ["bridge", "host", "null", "overlay"],
        "Log": ["json-file", "local"],
    },
}


class FakeDocker:
    """Answers ``info`` from a fixed dict and reports a fixed number of running containers."""

    def __init__(self, info: dict[str, Any] | None = None, running: int = 2) -> None:
        self._info = copy.deepcopy(SAMPLE_INFO if info is None else info)
        self.running = running
        self.info_calls = 0
        self.closed = False

    async def info(self) -> dict[str, Any]:
        """A copy of the fixed info."""
        self.info_calls += 1
        return copy.deepcopy(self._info)

    async def running_containers(self) -> int:
        """The fixed count."""
        return self.running

    def close(self) -> None:
        """Remember that the agent closed it."""
        self.closed = True
