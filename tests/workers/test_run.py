"""`kontena-master worker` as a real process: it consumes, and stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.config import Settings
from core.jobs import Job
from models import TickRun
from models.db import Database
from tests.fixtures.server import free_port
from tests.workers.support import eventually
from workers.broker import DramatiqSender, build_broker

Popen = subprocess.Popen[bytes]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (
    "import logging, sys\n"
    "from core.config import load_settings\n"
    "from workers.run import run_worker\n"
    "logging.basicConfig(level='INFO', stream=sys.stderr)\n"
    "raise SystemExit(run_worker(load_settings(), processes=int(sys.argv[1]), threads=2))\n"
)


def start_worker(settings: Settings, processes: int, log: Path, redis_url: str = "") -> Popen:
    """Start a worker process against this run's database and Redis."""
    env = dict(os.environ)
    env.update(
        KONTENA_DATABASE_URL=settings.resolved_database_url,
        KONTENA_VAULT_KEY=settings.vault_key,
        KONTENA_REDIS_URL=redis_url or settings.redis_url,
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(processes)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its worker children share the group: one kill ends all
        )


@pytest.fixture
def processes(redis_client: redis.Redis) -> Iterator[list[Popen]]:
    """Worker processes the test starts; survivors and their children are killed at teardown."""
    redis_client.flushdb()
    started: list[Popen] = []
    yield started
    for process in started:
        # By process group (the worker's own session): a parent killed alone would leave its
        # worker children running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
async def test_worker_process_runs_jobs_and_stops_on_sigterm(
    db: Database, settings: Settings, processes: list[Popen], tmp_path: Path, count: int
) -> None:
    """Jobs sent to Redis are run by the worker process(es); SIGTERM ends them with exit 0."""
    log = tmp_path / "worker.log"
    worker = start_worker(settings, count, log)
    processes.append(worker)
    broker = build_broker(settings)
    try:
        sender = DramatiqSender(broker)
        for slot in (1, 2, 3):
            sender.send(
                Job("maintenance.retention", "maintenance", kwargs={"slot": slot, "epoch": 1})
            )

        async def all_ran() -> bool:
            async with db.session() as session:
                found = [
                    await session.get(TickRun, ("maintenance.retention", s)) for s in (1, 2, 3)
                ]
            return all(found)

        await eventually(all_ran, timeout=30)
    finally:
        broker.close()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log.read_text()


@pytest.mark.slow
def test_worker_exits_3_when_redis_is_unreachable(
    settings: Settings, processes: list[Popen], tmp_path: Path
) -> None:
    """Like Dramatiq's own CLI: a broker connection error at start is exit code 3."""
    log = tmp_path / "worker.log"
    worker = start_worker(settings, 1, log, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    processes.append(worker)
    assert worker.wait(timeout=30) == 3, log.read_text()
    assert "cannot reach Redis" in log.read_text()
