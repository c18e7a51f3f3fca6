"""``kontena-master scheduler``: the clock process; extra copies wait on the lease."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from core.config import Settings
from core.vault import load_vault
from core.vault_check import check_vault_key
from models.db import Database
from workers.broker import DramatiqSender, build_broker


def run_scheduler_process(settings: Settings) -> int:
    """Run the scheduler until SIGTERM/SIGINT."""
    from scheduler.clock import run_scheduler

    # Same start-up check as every other role: a wrong vault key is a clear error, not a crash
    # in the first job that touches an encrypted value.
    vault = load_vault(
        settings.vault_key, settings.vault_old_keys, settings.data_dir, generate=False
    )
    check_vault_key(settings.resolved_database_url, vault)
    sender = DramatiqSender(build_broker(settings))
    holder = f"{socket.gethostname()}:{os.getpid()}"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        db = Database(settings.resolved_database_url, pool_size=2)
        try:
            await run_scheduler(settings, db, sender, stop=stop, holder=holder)
        finally:
            await db.dispose()

    asyncio.run(main())
    return 0
