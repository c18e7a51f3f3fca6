"""The clock: while it holds the leader lease, it sends each periodic job once per time slot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.config import Settings
from core.jobs import Job, JobSender
from core.ticks import LEADER_LEASE
from models.base import utcnow
from models.db import Database
from scheduler.lease import LeaderLease, LeaseState

log = logging.getLogger("kontena.scheduler")


@dataclass(frozen=True)
class Tick:
    """A periodic job: its actor receives ``slot`` (= now // period) and the leader's ``epoch``."""

    actor: str
    queue: str
    period: float
    # A Settings field that overrides ``period`` when set (tests shorten it).
    period_setting: str = ""

    def resolved(self, settings: Settings) -> Tick:
        """This tick with its period taken from ``period_setting`` when it names one."""
        if not self.period_setting:
            return self
        return replace(self, period=float(getattr(settings, self.period_setting)))


# The schedule table: add a line for every periodic job (renewals, node sweeps, …).
SCHEDULE: list[Tick] = [
    Tick("maintenance.recover", "maintenance", 15),
    Tick("maintenance.retention", "maintenance", 3600),
    Tick("nodes.liveness", "nodes", 10),
    # Certificate renewals (LE asks for at least twice a day): ARI checks and backoff retries
    # fall due at arbitrary times, so a cheap look every 5 minutes (one indexed query).
    Tick("certs.renew", "certs", 300),
    # Explicit Redis broker maintenance: a dead worker's messages come back within a minute.
    Tick("maintenance.broker", "maintenance", 60),
    # Continuous rescheduling (reference §3.6): lost, drained and new nodes, lagging services.
    Tick("services.reschedule", "deploys", 20, period_setting="reschedule_interval"),
]

# The clock wakes at least this often to notice slot changes.
MAX_SLEEP = 1.0


def default_holder() -> str:
    """A name for this scheduler that is unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def run_scheduler(
    settings: Settings,
    db: Database,
    sender: JobSender,
    *,
    stop: asyncio.Event,
    holder: str | None = None,
    schedule: Sequence[Tick] | None = None,
) -> None:
    """Send ticks while leader, wait while another scheduler leads, until ``stop`` is set."""
    clock = _Clock(settings, db, sender, holder or default_holder(), schedule or SCHEDULE)
    log.info("scheduler %s started (lease TTL %s s)", clock.lease.holder, settings.lease_ttl)
    try:
        while not stop.is_set():
            delay = await clock.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    finally:
        await clock.resign()


class _Clock:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        sender: JobSender,
        holder: str,
        schedule: Sequence[Tick],
    ) -> None:
        self.lease = LeaderLease(db, LEADER_LEASE, holder, settings.lease_ttl)
        self.sender = sender
        self.schedule = [tick.resolved(settings) for tick in schedule]
        self.ttl = float(settings.lease_ttl)
        self.epoch: int | None = None
        self.next_attempt = 0.0  # monotonic time of the next acquire/renew
        self.valid_until = 0.0  # monotonic time our lease surely lasts until
        self.sent: dict[str, int] = {}
        self.waiting_for: str | None = None

    async def step(self) -> float:
        """Renew or acquire when due, send due ticks; returns seconds until the next step."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self.next_attempt:
            await self._attempt(loop.time())
        if self.epoch is not None and loop.time() >= self.valid_until:
            # Renewals kept failing for a whole TTL: another scheduler may lead by now.
            self._lost("renewal did not succeed within the lease TTL")
        if self.epoch is not None:
            await self._send_due(self.epoch)
        return max(0.01, min(MAX_SLEEP, self.next_attempt - loop.time()))

    async def _attempt(self, started: float) -> None:
        try:
            state = await asyncio.wait_for(self.lease.attempt(), timeout=self.ttl / 3)
        except Exception as exc:
            log.warning("lease attempt failed: %s", type(exc).__name__)
            # Try again soon; a leader keeps sending until its lease surely ran out.
            self.next_attempt = started + min(1.0, self.ttl / 3)
            return
        if state.held:
            self._gained(state, started)
        else:
            self._waiting(state, started)

    def _gained(self, state: LeaseState, started: float) -> None:
        assert state.epoch is not None
        if self.epoch != state.epoch:
            log.info("scheduler %s is the leader (epoch %d)", self.lease.holder, state.epoch)
            self.sent.clear()
        self.epoch = state.epoch
        self.waiting_for = None
        # Measured from before the attempt: the lease may have been written at that instant.
        self.valid_until = started + self.ttl
        self.next_attempt = started + self.ttl / 3

    def _waiting(self, state: LeaseState, started: float) -> None:
        if self.epoch is not None:
            self._lost(f"the lease is held by {state.holder}")
        if state.holder != self.waiting_for:
            log.info("scheduler %s waits: %s leads", self.lease.holder, state.holder)
            self.waiting_for = state.holder
        # Come back right after the current lease would expire, so a dead leader is replaced
        # within the TTL; never sleep longer than a renewal period.
        wait = self.ttl / 3
        if state.expires_at is not None:
            remaining = (state.expires_at - utcnow()).total_seconds() + 0.05
            wait = min(wait, max(0.05, remaining))
        self.next_attempt = started + wait

    def _lost(self, why: str) -> None:
        log.warning("scheduler %s lost the leadership: %s", self.lease.holder, why)
        self.epoch = None
        self.sent.clear()

    async def _send_due(self, epoch: int) -> None:
        now = time.time()
        for tick in self.schedule:
            slot = int(now // tick.period)
            if self.sent.get(tick.actor) == slot:
                continue
            job = Job(tick.actor, tick.queue, kwargs={"slot": slot, "epoch": epoch})
            try:
                await asyncio.to_thread(self.sender.send, job)
            except Exception as exc:
                # Not marked sent: the next step tries again (the slot key makes that safe).
                log.warning("sending tick %s failed: %s", tick.actor, type(exc).__name__)
                continue
            self.sent[tick.actor] = slot

    async def resign(self) -> None:
        """On a clean stop, let the next scheduler take over at once."""
        if self.epoch is None:
            return
        try:
            await self.lease.release()
            log.info("scheduler %s released the leadership", self.lease.holder)
        except Exception as exc:
            log.warning("releasing the lease failed: %s", type(exc).__name__)
        self.epoch = None
