"""The processes ``tests.benchmarks.agents`` starts: one API process and the agent swarm."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from tests.fixtures.server import free_port

VAULT_KEY = "benchmark-vault-key-0123456789"


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process in MB, from /proc/<pid>/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB → MB
    return values


def _stop(proc: subprocess.Popen[str], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ApiProcess:
    """``python -m api.cli api`` on a free loopback port; stderr goes to a log file."""

    def __init__(self, db_url: str, redis_url: str, tmp: str) -> None:
        self.port = free_port()
        self.log_path = Path(tmp) / "api.log"
        self.env = {
            **os.environ,
            "KONTENA_DATABASE_URL": db_url,
            "KONTENA_REDIS_URL": redis_url,
            "KONTENA_VAULT_KEY": VAULT_KEY,
            "KONTENA_DATA_DIR": tmp,
            "KONTENA_HOST": "127.0.0.1",
            "KONTENA_PORT": str(self.port),
            "KONTENA_LOG_LEVEL": "warning",
        }
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    @property
    def pid(self) -> int:
        """The API process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def http_url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Where agents connect."""
        return f"ws://127.0.0.1:{self.port}/"

    def __enter__(self) -> ApiProcess:
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "api"], env=self.env, stderr=self._log, text=True
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            _stop(self.proc, 15)
        if self._log is not None:
            self._log.close()

    async def wait_ready(self, deadline: float = 60.0) -> None:
        """Poll ``/v1/ping`` until the API answers."""
        end = time.monotonic() + deadline
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the API process exited: {self.log_path.read_text()}")
                try:
                    if (await http.get(f"http://127.0.0.1:{self.port}/v1/ping")).is_success:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError("the API process did not start")
                await asyncio.sleep(0.1)

    def log_summary(self) -> list[str]:
        """The API's warnings and errors, counted by message (timestamps stripped)."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        counts: Counter[str] = Counter()
        for line in lines:
            match = re.search(r"\b(WARNING|ERROR|CRITICAL)\b (.*)", line)
            if match:
                message = re.sub(r"\b[0-9a-f]{24}\b|\d+", "#", match.group(2))
                counts[f"{match.group(1)} {message[:140]}"] += 1
        return [f"API log: {count} x {message}" for message, count in counts.most_common(6)]


class Swarm:
    """``tests.benchmarks.agent_swarm`` processes sharing ``n`` agents; started together."""

    def __init__(
        self,
        uri: str,
        run: str,
        grids: dict[str, Any],
        n: int,
        procs: int,
        args: argparse.Namespace,
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "tests.benchmarks.agent_swarm",
            "--uri",
            uri,
            "--run",
            run,
            "--stats-interval",
            str(args.stats_interval),
            "--ping-interval",
            str(args.ping_interval),
        ]
        self.grids = json.dumps(grids)  # {"tokens": [...], "per_grid": k}
        share, extra = divmod(n, procs)
        self.counts = [share + (1 if i < extra else 0) for i in range(procs)]
        self.procs: list[subprocess.Popen[str]] = []
        self.reconnects = 0
        self.notes: list[str] = []

    def __enter__(self) -> Swarm:
        first = 0
        for count in self.counts:
            proc = subprocess.Popen(
                [*self.command, "--first", str(first), "--count", str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            assert proc.stdin is not None
            proc.stdin.write(self.grids + "\n")
            proc.stdin.flush()
            first += count
        for proc in self.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                self.__exit__(None, None, None)
                raise RuntimeError("an agent process failed to start")
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
            proc.stdin = None  # communicate() must not flush it again
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                self.notes.append(f"agent process {proc.pid} did not stop in 60 s; killed")
            summary = _last_json(out)
            if summary is None:
                self.notes.append(f"agent process {proc.pid} exited {proc.returncode}, no summary")
                continue
            self.reconnects += int(summary.get("reconnects", 0))
            codes = summary.get("exit_codes", {})
            if set(codes) - {"0"}:
                self.notes.append(f"agent exit codes {codes}")
            for reason, count in summary.get("reconnect_reasons", {}).items():
                self.notes.append(f"agent reconnect: {count} x {reason}")


def _last_json(out: str) -> dict[str, Any] | None:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None
