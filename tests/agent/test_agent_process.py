"""``python -m agent.main`` as a real process: SIGTERM, fatal close codes, config errors.

No Docker daemon is needed: the node id and name are given, so the handshake does not ask
Docker; DOCKER_HOST points at a socket that does not exist.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.agent.fake_master import DEADLINE, fake_master

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def agent_env(url: str, **extra: str) -> dict[str, str]:
    """A clean environment for the agent process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KONTENA_", "DOCKER_"))}
    env.update(
        {
            "KONTENA_URI": url,
            "KONTENA_TOKEN": "grid-token-secret",
            "KONTENA_NODE_ID": "PROC:NODE:1",
            "KONTENA_NODE_NAME": "proc-node",
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            "KONTENA_LOG_LEVEL": "debug",
        }
    )
    env.update(extra)
    return env


@asynccontextmanager
async def agent_process(
    env: dict[str, str], *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start the agent; kill it if a test left it running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.main",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """Wait (with a deadline) for the exit status and stderr."""
    async with asyncio.timeout(DEADLINE):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_sigterm_closes_with_1000_and_exits_0() -> None:
    async with fake_master() as master, agent_process(agent_env(master.url)) as proc:
        conn = await master.accept()
        assert conn.headers["Kontena-Node-Id"] == "PROC:NODE:1"
        # The process answers RPC, so its handlers (and signal handlers) are installed.
        pong = await conn.response_to(await conn.send_request("/agent/ping", []))
        assert pong.result == "pong"
        proc.send_signal(signal.SIGTERM)
        code, err = await finish(proc)
        assert code == 0, err
        async with asyncio.timeout(DEADLINE):
            assert await conn.close_code == 1000
        assert "agent stopped" in err
        assert "grid-token-secret" not in err


async def test_sigint_also_stops_cleanly() -> None:
    async with fake_master() as master, agent_process(agent_env(master.url)) as proc:
        conn = await master.accept()
        await conn.response_to(await conn.send_request("/agent/ping", []))
        proc.send_signal(signal.SIGINT)
        code, err = await finish(proc)
        assert code == 0, err


async def test_close_4001_stops_the_agent_with_a_reason() -> None:
    async with fake_master() as master, agent_process(agent_env(master.url)) as proc:
        conn = await master.accept()
        await conn.close(4001, "Invalid grid token")
        code, err = await finish(proc)
        assert code == 3
        assert "4001 (invalid grid token): Invalid grid token" in err
        assert "not reconnecting" in err


async def test_missing_configuration_exits_2_naming_the_variable() -> None:
    env = agent_env("ws://127.0.0.1:1/")
    del env["KONTENA_URI"]
    async with agent_process(env) as proc:
        code, err = await finish(proc)
    assert code == 2
    assert "KONTENA_URI is required" in err


async def test_help_lists_the_environment() -> None:
    async with agent_process(agent_env("ws://127.0.0.1:1/"), "--help") as proc:
        async with asyncio.timeout(DEADLINE):
            out, _ = await proc.communicate()
    assert proc.returncode == 0
    text = out.decode()
    for name in (
        "KONTENA_URI",
        "KONTENA_TOKEN",
        "KONTENA_NODE_TOKEN",
        "DOCKER_HOST",
        "KONTENA_NODE_ID",
    ):
        assert name in text


async def test_agent_imports_only_the_protocol_of_our_code() -> None:
    script = (
        "import sys, agent.main\n"
        "ours = ('core', 'models', 'api', 'workers', 'scheduler')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ours))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DEADLINE):
        out, _ = await proc.communicate()
    assert out.decode().strip() == "['core', 'core.protocol']"
