"""``kontena-master worker``: Dramatiq workers in this process, or in several child processes."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from core.config import Settings
from core.jobs import QUEUES
from core.vault import load_vault
from core.vault_check import check_vault_key
from workers.actors import load_actors
from workers.broker import build_broker

log = logging.getLogger(__name__)

# Dramatiq's own exit code when the broker cannot be reached at start.
EXIT_BROKER_UNREACHABLE = 3
EXIT_USAGE = 2
# How long a stopping worker lets running actors finish; the rest are redelivered (and their
# rows' leases let another worker claim them), so this need not cover the longest job.
SHUTDOWN_TIMEOUT_MS = 30_000
# Longest sleep of an idle consumer between Redis fetches (Dramatiq's default is 1000).
IDLE_POLL_MS = 100


def start_in_process_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    """Start a Worker on ``broker`` in this process (embedded mode, tests); caller stops it."""
    load_actors(broker)
    # A short poll timeout lets Ctrl-C stop the in-process workers in a tenth of a second
    # instead of Dramatiq's default second per consumer.
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=IDLE_POLL_MS)
    # Dramatiq prefetches 2 x threads per queue; our jobs are long (deploys, ACME waits), so a
    # prefetched message would wait behind a busy thread while another worker idles.
    worker.queue_prefetch = max(1, threads)
    worker.start()
    return worker


def run_worker(
    settings: Settings,
    queues: Sequence[str] | None = None,
    processes: int = 1,
    threads: int = 4,
) -> int:
    """Consume ``queues`` (default: all) until SIGTERM/SIGINT; returns the exit code."""
    unknown = sorted(set(queues or ()) - set(QUEUES))
    if unknown:
        log.error("unknown queue(s) %s; known: %s", ", ".join(unknown), ", ".join(QUEUES))
        return EXIT_USAGE
    # A wrong or missing vault key stops the worker before it takes jobs it could only fail.
    vault = load_vault(
        settings.vault_key, settings.vault_old_keys, settings.data_dir, generate=False
    )
    check_vault_key(settings.resolved_database_url, vault)
    if processes <= 1:
        return _serve(settings, list(queues or ()), threads)
    return _supervise(settings, list(queues or ()), processes, threads)


def _serve(settings: Settings, queues: list[str], threads: int) -> int:
    stop = threading.Event()
    _on_signals(lambda signum: stop.set())
    broker = build_broker(settings)
    if isinstance(broker, RedisBroker):
        try:
            broker.client.ping()
        except Exception as exc:
            log.error("cannot reach Redis: %s", type(exc).__name__)
            return EXIT_BROKER_UNREACHABLE
    load_actors(broker)
    # Dramatiq's default 1 s idle timeout is also its fetch back-off: an idle worker took up to
    # 1 s to notice a new deploy. 100 ms costs each queue's consumer ~10 cheap Redis polls/s.
    worker = dramatiq.Worker(
        broker, queues=set(queues) or None, worker_threads=threads, worker_timeout=IDLE_POLL_MS
    )
    worker.queue_prefetch = max(1, threads)  # see start_in_process_worker
    worker.start()
    log.info("worker consuming %s with %d threads", ", ".join(queues or QUEUES), threads)
    stop.wait()
    log.info("worker stopping (waiting up to %d s for running jobs)", SHUTDOWN_TIMEOUT_MS // 1000)
    worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    broker.close()
    return 0


def _child(settings: Settings, queues: list[str], threads: int) -> None:
    from core.logging_setup import configure

    # A spawned child starts with bare logging: same format as its supervisor.
    configure(settings.log_level, settings.log_format or "json")
    raise SystemExit(_serve(settings, queues, threads))


def _supervise(settings: Settings, queues: list[str], processes: int, threads: int) -> int:
    # Spawned, not forked: a fork would copy Redis connections and half-started threads.
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_child, args=(settings, queues, threads), name=f"worker-{i}")
        for i in range(processes)
    ]
    stopping = threading.Event()

    def forward(signum: int) -> None:
        stopping.set()
        for child in children:
            if child.pid is not None and child.is_alive():
                child.terminate()

    _on_signals(forward)
    for child in children:
        child.start()
    # One child dying (OOM kill, crash) stops the rest and fails the command, so the supervisor
    # (systemd, Docker) restarts a whole pool instead of leaving a silently smaller one.
    crashed = False
    while not stopping.is_set():
        if any(not child.is_alive() for child in children):
            log.error("a worker process exited; stopping the others")
            crashed = True
            forward(signal.SIGTERM)
            break
        stopping.wait(1.0)
    for child in children:
        child.join()
    return 1 if crashed else 0


def _on_signals(handler: Callable[[int], None]) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        handler(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
