"""`kontena-master up` starts a local agent when a Docker Engine answers at DOCKER_HOST."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingUnixStreamServer
from typing import Any

import pytest
from sqlalchemy import select

from api.local_agent import docker_host
from core.tokens import digest, new_grid_token
from models import Grid, Node
from tests.fixtures.fake_agent import ws_url
from tests.fixtures.server import free_port, serve

pytestmark = pytest.mark.slow

INFO = {
    "ID": "FAKE:ENGINE:0001",
    "Name": "fakehost",
    "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
    "KernelVersion": "6.1.0",
    "DockerRootDir": "/var/lib/docker",
    "Driver": "overlay2",
    "MemTotal": 4_000_000_000,
    "NCPU": 2,
    "ServerVersion": "20.10.24",
    "Labels": [],
    "Plugins": {"Volume": ["local"], "Network": ["bridge", "host"]},
}


class FakeDocker(BaseHTTPRequestHandler):
    """Just enough of the Engine API for the agent to identify and report the node."""

    def address_string(self) -> str:
        return "fake-docker"  # a unix socket has no client address

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        body: Any
        if path.endswith("/version"):
            body = {"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"}
        elif path.endswith("/info"):
            body = INFO
        elif path.endswith("/containers/json"):
            body = []
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_docker(path: Path) -> Iterator[str]:
    """Serve the fake Engine on a unix socket; yields its DOCKER_HOST."""
    server = ThreadingUnixStreamServer(str(path), FakeDocker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def up(data_dir: Path, port: int, *args: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `kontena-master up`; stopped with Ctrl-C afterwards."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *args,
        ],
        env={**os.environ, "KONTENA_REDIS_URL": "", "KONTENA_DATABASE_URL": "", **env},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def nodes(data_dir: Path) -> list[tuple[Any, ...]]:
    """(name, node_id, connected, updated, docker_version) of every node, straight from SQLite."""
    db = data_dir / "kontena.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(
                "SELECT name, node_id, connected, updated, docker_version FROM nodes"
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # not migrated yet


def wait_for(check: Any, deadline: float) -> Any:
    """Poll ``check`` until it returns something truthy."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("condition not met before the deadline")


def test_docker_host_needs_a_listening_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    assert docker_host() is None
    with fake_docker(tmp_path / "d.sock") as host:
        monkeypatch.setenv("DOCKER_HOST", host)
        assert docker_host() == host
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert docker_host() == "tcp://10.0.0.1:2375"


def test_up_joins_the_local_engine_to_the_default_grid(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with fake_docker(tmp_path / "docker.sock") as host:
        with up(data_dir, free_port(), DOCKER_HOST=host) as proc:
            online = wait_for(lambda: [n for n in nodes(data_dir) if n[3]], deadline=60)
            assert online == [("fakehost", "FAKE:ENGINE:0001", 1, 1, "20.10.24")]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0
        # The master stopped its agent and recorded the disconnect on the way out.
        assert nodes(data_dir)[0][2] == 0

        with up(data_dir, free_port(), "--no-agent", DOCKER_HOST=host) as proc:
            wait_for(lambda: (data_dir / "admin.token").exists(), deadline=30)
            time.sleep(3)  # an agent, if one were started, would have connected by now
            assert nodes(data_dir)[0][2] == 0
            assert proc.poll() is None


async def test_a_killed_agent_is_offline_at_once_and_comes_back_as_the_same_node(
    tmp_path: Path, app: Any, db: Any
) -> None:
    """SIGKILL: the kernel closes the socket, the holder marks the node offline right away."""
    token = new_grid_token()
    async with db.session() as session:
        session.add(Grid(name="main", token_hash=digest(token), token_encrypted="x"))
        await session.commit()

    async def row() -> Node | None:
        async with db.session() as session:
            return (await session.execute(select(Node))).scalar_one_or_none()

    async def until(check: Any, deadline: float) -> float:
        start = time.monotonic()
        while not await check():
            assert time.monotonic() - start < deadline
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    async def online() -> bool:
        node = await row()
        return node is not None and node.connected and node.updated

    async def offline() -> bool:
        node = await row()
        return node is not None and not node.connected

    with fake_docker(tmp_path / "docker.sock") as host:
        async with serve(app) as url:
            env = {**os.environ, "KONTENA_URI": ws_url(url), "KONTENA_TOKEN": token}
            env["DOCKER_HOST"] = host
            agent = subprocess.Popen([sys.executable, "-m", "agent.main"], env=env)
            try:
                await until(online, 60)
                first = await row()
                agent.send_signal(signal.SIGKILL)
                agent.wait()
                took = await until(offline, 30)
                print(f"\nSIGKILLed agent's node offline after {took:.3f} s")
                assert took < 2.0
                agent = subprocess.Popen([sys.executable, "-m", "agent.main"], env=env)
                await until(online, 60)
                again = await row()
                assert first is not None and again is not None and again.id == first.id
            finally:
                agent.kill()
                agent.wait()
