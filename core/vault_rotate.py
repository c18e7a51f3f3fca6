"""``vault rotate``: re-wrap every vault value under the newest key while the master serves.

Rows are visited in key order, in batches, each batch in its own short transaction. A row is
written only if its ciphertext is still the one that was read (compare-and-set), so a value the
API changed in the meantime is never overwritten with the old one; such rows are looked at
again in the next pass. Values already under the newest key are skipped, so a rotation that
was interrupted, or run twice, simply carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.vault import Vault, VaultError
from core.vault_columns import VAULT_COLUMNS, VaultColumn
from models.db import Database

DEFAULT_BATCH = 200
# Passes over the rows that changed under us; each pass only retries those.
MAX_PASSES = 5


@dataclass
class ColumnReport:
    """What a rotation did to one column."""

    label: str
    rewrapped: int = 0
    current: int = 0
    raced: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    """What a rotation did, per column; ``ok`` when every value is under the newest key."""

    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No value failed to decrypt and none is left under an older key."""
        return all(not c.failed and not c.raced for c in self.columns)


async def compare_and_set(
    session: AsyncSession, column: VaultColumn, row_id: object, old: str, new: str
) -> bool:
    """Store ``new`` only if the row still holds ``old``; False when it changed meanwhile."""
    table: Table = column.table
    values: dict[str, object] = {column.value_column: new}
    # Keep `updated_at` as it was: rotation does not change what a user sees as modified.
    if "updated_at" in table.c:
        values["updated_at"] = table.c.updated_at
    result = await session.execute(
        update(table)
        .where(table.c[column.id_column] == row_id, table.c[column.value_column] == old)
        .values(values)
    )
    return bool(getattr(result, "rowcount", 0))


async def rotate_column(
    db: Database,
    vault: Vault,
    column: VaultColumn,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[ColumnReport], None] | None = None,
) -> ColumnReport:
    """Re-wrap one column; retries rows that changed during the pass."""
    report = ColumnReport(column.label)
    retry: set[object] | None = None  # None: visit every row
    for _ in range(MAX_PASSES):
        raced: set[object] = set()
        await _pass(db, vault, column, batch_size, report, retry, raced, progress)
        report.raced = len(raced)
        if not raced:
            break
        retry = raced
    return report


async def _pass(
    db: Database,
    vault: Vault,
    column: VaultColumn,
    batch_size: int,
    report: ColumnReport,
    only: set[object] | None,
    raced: set[object],
    progress: Callable[[ColumnReport], None] | None,
) -> None:
    key = column.table.c[column.id_column]
    last: object = None
    while True:
        query = column.select().order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        if only is not None:
            query = query.where(key.in_(only))
        async with db.session() as session:
            rows = (await session.execute(query)).mappings().all()
            if not rows:
                return
            for row in rows:
                old = str(row["value"])
                if not vault.needs_rewrap(old):
                    report.current += 1 if only is None else 0
                    continue
                try:
                    new = vault.rewrap(old, context=column.context(row))
                except VaultError as exc:
                    # Named by id only: the value and its plaintext never reach the output.
                    report.failed.append(f"{row['id']}: {exc}")
                    continue
                if await compare_and_set(session, column, row["id"], old, new):
                    report.rewrapped += 1
                else:
                    raced.add(row["id"])
            await session.commit()
        last = rows[-1]["id"]
        if progress is not None:
            progress(report)


async def rotate_all(
    db: Database,
    vault: Vault,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[ColumnReport], None] | None = None,
) -> RotationReport:
    """Re-wrap every registered vault column under the newest key."""
    report = RotationReport()
    for column in VAULT_COLUMNS:
        report.columns.append(
            await rotate_column(db, vault, column, batch_size=batch_size, progress=progress)
        )
    return report
