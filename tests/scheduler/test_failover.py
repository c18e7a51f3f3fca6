"""Two real `kontena-master scheduler` processes: the second takes over after SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.config import Settings
from core.ticks import LEADER_LEASE
from models import Lease
from models.db import Database
from tests.workers.support import eventually

LEASE_TTL = 3
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (
    "import logging, sys\n"
    "from core.config import load_settings\n"
    "from scheduler.run import run_scheduler_process\n"
    "logging.basicConfig(level='INFO', stream=sys.stderr, format='%(asctime)s %(message)s')\n"
    "raise SystemExit(run_scheduler_process(load_settings()))\n"
)


class Scheduler:
    """One scheduler process; its log goes to a file the test reads."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = dict(os.environ)
        env.update(
            KONTENA_DATABASE_URL=settings.resolved_database_url,
            KONTENA_VAULT_KEY=settings.vault_key,
            KONTENA_REDIS_URL=settings.redis_url,
            KONTENA_LEASE_TTL=str(LEASE_TTL),
        )
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, stderr=out, stdout=out
            )

    @property
    def pid(self) -> int:
        """The process id (part of the lease holder name)."""
        return self.process.pid

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text()

    def kill(self) -> None:
        """Stop it by pid if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def schedulers(redis_client: redis.Redis) -> Iterator[list[Scheduler]]:
    """Scheduler processes the test starts; survivors are killed, their ticks flushed."""
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.kill()


async def holder(db: Database) -> str | None:
    """Who holds the scheduler lease now."""
    async with db.session() as session:
        lease = await session.get(Lease, LEADER_LEASE, populate_existing=True)
        return lease.holder if lease else None


@pytest.mark.slow
async def test_second_scheduler_takes_over_within_the_ttl_after_sigkill(
    db: Database, settings: Settings, schedulers: list[Scheduler], tmp_path: Path
) -> None:
    """The second waits while the first lives; after SIGKILL it leads within the lease TTL."""
    first = Scheduler(settings, tmp_path / "first.log")
    schedulers.append(first)

    async def first_leads() -> bool:
        return (await holder(db) or "").endswith(f":{first.pid}")

    await eventually(first_leads, timeout=20)
    second = Scheduler(settings, tmp_path / "second.log")
    schedulers.append(second)

    async def second_waits() -> bool:
        return "waits" in second.output()

    await eventually(second_waits, timeout=20)
    # Sampled for longer than a TTL: the first keeps renewing, so the second keeps waiting.
    deadline = time.monotonic() + LEASE_TTL * 1.5
    while time.monotonic() < deadline:
        assert await first_leads(), second.output()
        await asyncio.sleep(0.1)

    killed_at = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)

    async def second_leads() -> bool:
        return (await holder(db) or "").endswith(f":{second.pid}")

    await eventually(second_leads, timeout=LEASE_TTL * 3, interval=0.02)
    takeover = time.monotonic() - killed_at
    print(f"\nscheduler takeover after SIGKILL: {takeover:.2f} s (lease TTL {LEASE_TTL} s)")
    assert takeover <= LEASE_TTL + 0.25
    async with db.session() as session:
        lease = await session.get(Lease, LEADER_LEASE)
        assert lease is not None and lease.epoch == 2
    await eventually(_logged(second, "is the leader (epoch 2)"))

    # A clean stop releases the lease and exits 0.
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=10) == 0
    assert "released the leadership" in second.output()


def _logged(scheduler: Scheduler, text: str):  # type: ignore[no-untyped-def]
    async def probe() -> bool:
        return text in scheduler.output()

    return probe
