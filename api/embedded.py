"""``kontena-master up``: API, workers and scheduler in one process on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import uvicorn

from api.app import create_app
from core.bootstrap import first_start
from core.config import Settings
from core.runtime import Runtime, build_runtime
from core.vault_check import check_vault_key
from models.migrate import upgrade
from workers.broker import DramatiqSender, build_broker

log = logging.getLogger("kontena.up")

SHUTDOWN_SECONDS = 3


def run_embedded(settings: Settings, *, local_agent: bool = True) -> int:
    """Migrate, bootstrap on first start, then serve until Ctrl-C (with a local agent)."""
    data_dir = Path(settings.data_dir)
    # The directory holds the vault key and the admin token: only its owner may enter it.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)

    broker = build_broker(settings)
    runtime = build_runtime(settings, DramatiqSender(broker), embedded=True)
    check_vault_key(settings.resolved_database_url, runtime.vault)

    from workers.run import start_in_process_worker

    worker = start_in_process_worker(broker, settings.worker_threads)
    try:
        asyncio.run(_serve(runtime, data_dir, local_agent=local_agent))
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal way to stop
    finally:
        worker.stop(timeout=SHUTDOWN_SECONDS * 1000)
        broker.close()
    return 0


async def _serve(runtime: Runtime, data_dir: Path, *, local_agent: bool) -> None:
    from api.local_agent import start_local_agent, stop_local_agent
    from scheduler.clock import run_scheduler

    token_file = data_dir / "admin.token"
    token = await first_start(runtime, grid_name="default")
    if token is not None:
        _write_private(token_file, token)
    stop = asyncio.Event()
    scheduler = asyncio.create_task(
        run_scheduler(runtime.settings, runtime.db, runtime.sender, stop=stop, holder="embedded")
    )
    app = create_app(runtime)
    settings = runtime.settings
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        # Agent frames are small MessagePack messages: per-message deflate saves little and
        # costs ~50 KB of compressor state per socket (1,000 agents: ~45 MB).
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    # uvicorn exposes no start event; announce only once the socket really listens.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    agent = None
    if server.started:
        _announce(settings.resolved_public_url, token_file)
        if local_agent:
            try:
                agent = await start_local_agent(runtime)
            except Exception:
                log.exception("the local agent could not be started")
    try:
        await serving
    finally:
        await stop_local_agent(agent)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(scheduler, SHUTDOWN_SECONDS)
        await runtime.db.dispose()


def _write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read (the admin token is a full-power secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content + "\n")


def _announce(url: str, token_file: Path) -> None:
    print(
        f"Kontena Master is up at {url}\n"
        f"Admin token: {token_file.resolve()} (keep it secret)\n"
        f'Try: curl -H "Authorization: Bearer $(cat {token_file})" {url}/v1/grids\n'
        "Stop with Ctrl-C.",
        flush=True,
    )
