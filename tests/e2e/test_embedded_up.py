"""`kontena-master up` as a user runs it: a real process on SQLite with in-process workers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def master(
    data_dir: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `kontena-master up`; the block gets the process, which is stopped afterwards."""
    # Exactly the README's first command, with a private data directory and port.
    proc = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "up.sh"), "--data-dir", str(data_dir), "--port", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def wait_for_ping(port: int, proc: subprocess.Popen[str], deadline: float) -> float:
    """Seconds until `/v1/ping` answers pong; fails when the process dies or time runs out."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/ping", timeout=1).json() == {
                "message": "pong"
            }:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"/v1/ping did not answer within {deadline} s")


def stop(proc: subprocess.Popen[str]) -> float:
    """Ctrl-C the master; returns how long it took to exit."""
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    return time.monotonic() - start


def test_up_serves_bootstraps_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    with master(data_dir, port) as proc:
        assert wait_for_ping(port, proc, deadline=10) < 10
        token_file = data_dir / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "vault.key").stat().st_mode) == 0o600
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        base = f"http://127.0.0.1:{port}"
        grids = httpx.get(f"{base}/v1/grids", headers=headers).json()["grids"]
        assert [g["name"] for g in grids] == ["default"]
        created = httpx.post(f"{base}/v1/grids", headers=headers, json={"name": "kept"})
        assert created.status_code == 201
        assert stop(proc) < 5
        assert proc.returncode == 0
        assert proc.stdout is not None
        output = proc.stdout.read()
        assert str(token_file.resolve()) in output and "curl" in output

    first_token = token_file.read_text()
    with master(data_dir, port) as proc:
        wait_for_ping(port, proc, deadline=10)
        names = [g["name"] for g in httpx.get(f"{base}/v1/grids", headers=headers).json()["grids"]]
        assert sorted(names) == ["default", "kept"]
        assert token_file.read_text() == first_token  # no second bootstrap
        assert stop(proc) < 5


def test_up_refuses_a_vault_key_that_does_not_open_the_data(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    with master(data_dir, port) as proc:
        wait_for_ping(port, proc, deadline=10)
        stop(proc)
    env = {"KONTENA_VAULT_KEY": "a-different-key-than-the-generated-one"}
    with master(data_dir, port, env) as proc:
        assert proc.wait(20) == 2
        assert proc.stdout is not None
        assert "vault key does not decrypt" in proc.stdout.read()
