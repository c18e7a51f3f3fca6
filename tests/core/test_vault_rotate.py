"""Envelope re-wrapping and the rotation pass: only data keys change, nothing is clobbered."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select, text

from core.vault import MasterKey, Vault, VaultError
from core.vault_columns import VAULT_COLUMNS, VaultColumn, secret_context
from core.vault_rotate import compare_and_set, rotate_all, rotate_column
from models import GridSecret
from models.db import Database
from tests.conftest import TEST_VAULT_KEY
from tests.fixtures.grid_rows import create_grid_row

NEW_KEY = "the-next-vault-key-0123456789"
OLD = MasterKey.from_secret(TEST_VAULT_KEY)
NEW = MasterKey.from_secret(NEW_KEY)
WRAPPED = 12 + 48  # wrap nonce + wrapped data key (with tag) at the front of the blob


def _blob(token: str) -> bytes:
    return base64.b64decode(token.split(":", 2)[2])


def _secrets_column() -> VaultColumn:
    return next(c for c in VAULT_COLUMNS if c.label == "secrets")


def test_rewrap_changes_only_the_wrapped_data_key() -> None:
    old_vault, new_vault = Vault(OLD), Vault(NEW, [OLD])
    token = old_vault.encrypt("s3cr3t", context="secret:g/A")
    rewrapped = new_vault.rewrap(token, context="secret:g/A")
    assert not new_vault.needs_rewrap(rewrapped) and old_vault.needs_rewrap(rewrapped)
    # The value ciphertext (nonce + sealed value) is carried over byte for byte.
    assert _blob(rewrapped)[WRAPPED:] == _blob(token)[WRAPPED:]
    assert _blob(rewrapped)[:WRAPPED] != _blob(token)[:WRAPPED]
    assert Vault(NEW).decrypt(rewrapped, context="secret:g/A") == "s3cr3t"
    with pytest.raises(VaultError):
        Vault(OLD).decrypt(rewrapped, context="secret:g/A")
    assert new_vault.rewrap(rewrapped, context="secret:g/A") == rewrapped  # already current


def test_rewrap_refuses_a_value_of_another_context_or_an_unknown_key() -> None:
    token = Vault(OLD).encrypt("s3cr3t", context="secret:g/A")
    with pytest.raises(VaultError):
        Vault(NEW, [OLD]).rewrap(token, context="secret:g/B")
    with pytest.raises(VaultError, match="unknown vault key"):
        Vault(NEW).rewrap(token, context="secret:g/A")


async def _secret_row(db: Database, vault: Vault, grid_name: str, name: str, value: str) -> str:
    grid = await create_grid_row(db, vault, grid_name)
    row = GridSecret(
        grid_id=grid.id,
        name=name,
        value_encrypted=vault.encrypt(value, context=secret_context(grid_name, name)),
    )
    async with db.session() as session:
        session.add(row)
        await session.commit()
    return row.id


async def _stored(db: Database, secret_id: str) -> str:
    async with db.session() as session:
        row = await session.get(GridSecret, secret_id)
        assert row is not None
        return row.value_encrypted


async def test_compare_and_set_never_overwrites_a_value_changed_meanwhile(db: Database) -> None:
    old_vault, new_vault = Vault(OLD), Vault(NEW, [OLD])
    secret_id = await _secret_row(db, old_vault, "main", "PASSWORD", "first")
    read_by_rotation = await _stored(db, secret_id)
    # The API writes a new value after the rotation read the row, before it writes it back.
    updated = new_vault.encrypt("second", context=secret_context("main", "PASSWORD"))
    async with db.session() as session:
        row = await session.get(GridSecret, secret_id)
        assert row is not None
        row.value_encrypted = updated
        await session.commit()
    column = _secrets_column()
    rewrapped = new_vault.rewrap(read_by_rotation, context=secret_context("main", "PASSWORD"))
    async with db.session() as session:
        assert not await compare_and_set(session, column, secret_id, read_by_rotation, rewrapped)
        await session.commit()
    assert await _stored(db, secret_id) == updated
    # With the value it read still in place, the same call succeeds.
    async with db.session() as session:
        assert await compare_and_set(session, column, secret_id, updated, rewrapped)
        await session.commit()
    assert await _stored(db, secret_id) == rewrapped


async def test_rotation_is_idempotent_and_keeps_updated_at(db: Database) -> None:
    old_vault, new_vault = Vault(OLD), Vault(NEW, [OLD])
    ids = [await _secret_row(db, old_vault, f"grid{i}", "TOKEN", f"value-{i}") for i in range(5)]
    async with db.session() as session:
        before = dict((await session.execute(select(GridSecret.id, GridSecret.updated_at))).all())
    first = await rotate_all(db, new_vault, batch_size=2)
    assert first.ok
    secrets_first = next(c for c in first.columns if c.label == "secrets")
    assert (secrets_first.rewrapped, secrets_first.current) == (5, 0)
    second = await rotate_all(db, new_vault, batch_size=2)
    assert second.ok
    assert all(c.rewrapped == 0 for c in second.columns)
    secrets_report = next(c for c in second.columns if c.label == "secrets")
    assert secrets_report.current == 5
    grids_report = next(c for c in second.columns if c.label == "grid tokens")
    assert grids_report.current == 5
    for i, secret_id in enumerate(ids):
        token = await _stored(db, secret_id)
        assert Vault(NEW).decrypt(token, context=secret_context(f"grid{i}", "TOKEN")) == (
            f"value-{i}"
        )
    async with db.session() as session:
        after = dict((await session.execute(select(GridSecret.id, GridSecret.updated_at))).all())
    assert after == before


async def test_a_value_that_does_not_decrypt_is_reported_by_id_only(db: Database) -> None:
    old_vault, new_vault = Vault(OLD), Vault(NEW, [OLD])
    secret_id = await _secret_row(db, old_vault, "main", "BROKEN", "plain-value-x")
    good_id = await _secret_row(db, old_vault, "other", "GOOD", "fine")
    # Moved to another name: its context no longer matches, so authentication fails.
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE grid_secrets SET name = 'MOVED' WHERE id = :id"), {"id": secret_id}
        )
    report = await rotate_column(db, new_vault, _secrets_column())
    assert report.rewrapped == 1 and len(report.failed) == 1
    assert report.failed[0].startswith(secret_id)
    assert "plain-value-x" not in report.failed[0]
    assert not new_vault.needs_rewrap(await _stored(db, good_id))
