"""``kontena-master vault rotate``: re-wrap every vault value under ``KONTENA_VAULT_KEY``."""

from __future__ import annotations

import asyncio
import sys

from core.config import Settings
from core.vault import load_vault
from core.vault_check import verify_vault
from core.vault_rotate import DEFAULT_BATCH, ColumnReport, rotate_all
from models.db import Database


def _line(column: ColumnReport) -> str:
    return (
        f"{column.label}: {column.rewrapped} re-wrapped, {column.current} already current"
        + (f", {len(column.failed)} failed" if column.failed else "")
        + (f", {column.raced} changed during rotation" if column.raced else "")
    )


def _progress(column: ColumnReport) -> None:
    print(f"... {_line(column)}", flush=True)


def run_vault_rotate(settings: Settings, batch_size: int = DEFAULT_BATCH) -> int:
    """Rotate while the master keeps serving; 0 when every value is under the newest key."""
    vault = load_vault(
        settings.vault_key, settings.vault_old_keys, settings.data_dir, generate=False
    )
    if not settings.vault_old_keys.strip():
        print(
            "note: KONTENA_VAULT_OLD_KEYS is empty; values under any other key cannot be "
            "re-wrapped",
            file=sys.stderr,
        )

    async def rotate() -> bool:
        db = Database(settings.resolved_database_url, pool_size=2)
        try:
            # Fails with a clear message when none of the given keys opens this master's data.
            await verify_vault(db, vault)
            report = await rotate_all(db, vault, batch_size=batch_size, progress=_progress)
        finally:
            await db.dispose()
        print("summary:", flush=True)
        for column in report.columns:
            print(f"  {_line(column)}", flush=True)
            for failure in column.failed:
                print(f"  cannot re-wrap {column.label} {failure}", file=sys.stderr)
        return report.ok

    ok = asyncio.run(rotate())
    print(
        f"vault rotation {'complete' if ok else 'INCOMPLETE'}: newest key {vault.current.key_id}",
        flush=True,
    )
    return 0 if ok else 1
