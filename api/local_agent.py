"""The local agent of ``kontena-master up``: this machine's Docker Engine joins ``default``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

from sqlalchemy import select

from core.grids import grid_token
from core.runtime import Runtime
from models import Grid

log = logging.getLogger("kontena.up")

DEFAULT_SOCKET = "/var/run/docker.sock"
GRID = "default"
STOP_SECONDS = 5.0


def docker_host() -> str | None:
    """The Docker Engine to use (``DOCKER_HOST`` or the default socket) if it looks reachable."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if host and not host.startswith("unix://"):
        return host  # tcp:// or ssh://: the agent reports (and retries) if it is not there
    path = host.removeprefix("unix://") if host else DEFAULT_SOCKET
    if not Path(path).exists():
        return None
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return None
    return f"unix://{path}"


def agent_available() -> bool:
    """Whether the agent package is installed with this master."""
    try:
        return importlib.util.find_spec("agent.main") is not None
    except ModuleNotFoundError:
        return False


def local_uri(runtime: Runtime) -> str:
    """The master as the local agent reaches it (loopback when bound to every address)."""
    settings = runtime.settings
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    return f"ws://{host}:{settings.port}/"


async def start_local_agent(runtime: Runtime) -> asyncio.subprocess.Process | None:
    """Spawn ``python -m agent.main`` joined to the default grid; None when it cannot run."""
    if not agent_available():
        log.info("no local agent: the agent package is not installed")
        return None
    host = docker_host()
    if host is None:
        log.info("no local agent: no Docker Engine at DOCKER_HOST or %s", DEFAULT_SOCKET)
        return None
    async with runtime.db.session() as session:
        grid = (await session.execute(select(Grid).where(Grid.name == GRID))).scalar_one_or_none()
    if grid is None:
        log.info("no local agent: grid %r does not exist", GRID)
        return None
    env = {
        **os.environ,
        "KONTENA_URI": local_uri(runtime),
        "KONTENA_TOKEN": grid_token(runtime.vault, grid),
        "DOCKER_HOST": host,
        "KONTENA_LOG_LEVEL": runtime.settings.log_level,
    }
    env.pop("KONTENA_NODE_TOKEN", None)  # the grid token is the one to use here
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "agent.main", env=env)
    log.info("local agent started (pid %d) for Docker at %s", process.pid, host)
    return process


async def stop_local_agent(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM the agent, SIGKILL it if it has not stopped in time."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
