"""Start-up check that the configured vault key opens what the database holds."""

from __future__ import annotations

import secrets

from core.vault import Vault, VaultError
from models import ConfigEntry
from models.db import Database, insert_ignoring_conflict

# The original kept an encrypted salt under this hidden config key; we keep one too and use
# it to prove at start-up that the vault key is the one the data was encrypted with.
CANARY_KEY = "server.salt"


async def verify_vault(db: Database, vault: Vault) -> None:
    """Decrypt the canary (writing it on first start); raise VaultError on a wrong key."""
    async with db.session() as session:
        # Several processes may start at once on a fresh database: the first insert wins and
        # everyone, the winner included, then checks the stored canary.
        value = vault.encrypt(secrets.token_hex(16), context=f"config:{CANARY_KEY}")
        await session.execute(
            insert_ignoring_conflict(
                session, ConfigEntry, key=CANARY_KEY, value=value, encrypted=True
            )
        )
        await session.commit()
        entry = await session.get(ConfigEntry, CANARY_KEY)
        assert entry is not None
        try:
            vault.decrypt(entry.value or "", context=f"config:{CANARY_KEY}")
        except VaultError as exc:
            raise VaultError(
                "the vault key does not decrypt this master's data "
                f"({exc}); set KONTENA_VAULT_KEY to the key the data was written with, "
                "and list retired keys in KONTENA_VAULT_OLD_KEYS"
            ) from exc


def check_vault_key(database_url: str, vault: Vault) -> None:
    """Run :func:`verify_vault` on a short-lived engine before a process starts serving."""
    import asyncio

    async def check() -> None:
        db = Database(database_url)
        try:
            await verify_vault(db, vault)
        finally:
            await db.dispose()

    asyncio.run(check())
