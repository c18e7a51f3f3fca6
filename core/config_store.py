"""The master's configuration store: flat keys, JSON values, ``*_secret`` values encrypted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorTree, Invalid
from core.vault import Vault
from models import ConfigEntry, User

# Kept by the original for hashing; never shown, never changed through the API.
SALT_KEY = "server.salt"
SECRET_SUFFIX = "_secret"
MASK = "********"
MAX_KEY_LENGTH = 255
_KEY_FORMAT = re.compile(r"[A-Za-z0-9_.-]+")

ConfigValue = str | int | float | bool | None


def is_secret(key: str) -> bool:
    """Keys ending in ``_secret`` are encrypted at rest and masked when read."""
    return key.endswith(SECRET_SUFFIX)


def is_auth_key(key: str) -> bool:
    """Keys whose change invalidates every user's link to the OAuth2 provider."""
    return key.startswith("oauth2.") or key == "server.root_url"


def _context(key: str) -> str:
    return f"config:{key}"


def validate(data: Any) -> dict[str, ConfigValue]:
    """A request body as ``{key: scalar}``, or a 422 naming every bad key."""
    if not isinstance(data, dict):
        raise Invalid("Body must be a JSON object")
    errors: ErrorTree = {}
    for key, value in data.items():
        if key == "":
            errors[key] = "Key can't be blank"
        elif len(key) > MAX_KEY_LENGTH:
            errors[key] = "Key is too long"
        elif not _KEY_FORMAT.fullmatch(key):
            errors[key] = "Key isn't in the right format"
        elif isinstance(value, dict | list):
            errors[key] = "Value must be a string, number, boolean or null"
    if errors:
        raise Invalid(errors)
    return {k: v for k, v in data.items() if k != SALT_KEY}


def redact(data: Mapping[str, ConfigValue]) -> dict[str, ConfigValue]:
    """``data`` with the values of secret keys masked, for the audit log."""
    return {k: MASK if is_secret(k) and v is not None else v for k, v in data.items()}


def _render(entry: ConfigEntry) -> ConfigValue:
    if entry.encrypted or is_secret(entry.key):
        return MASK
    return _decode(entry.value)


def _decode(text: str | None) -> ConfigValue:
    if text is None:
        return None
    value: ConfigValue = json.loads(text)
    return value


async def get_all(session: AsyncSession, filter_: str | None = None) -> dict[str, ConfigValue]:
    """Every visible key sorted; ``filter_`` ``foo*`` is a prefix, otherwise a substring."""
    query = select(ConfigEntry).where(ConfigEntry.key != SALT_KEY).order_by(ConfigEntry.key)
    if filter_:
        if filter_.endswith("*"):
            prefix = filter_.replace("*", "")
            query = query.where(ConfigEntry.key.startswith(prefix, autoescape=True))
        else:
            query = query.where(ConfigEntry.key.contains(filter_, autoescape=True))
    entries = (await session.execute(query)).scalars()
    return {entry.key: _render(entry) for entry in entries}


async def get_one(session: AsyncSession, key: str) -> ConfigValue | None:
    """The visible value of ``key`` (secrets masked), None when unset or reserved."""
    if key == SALT_KEY:
        return None
    entry = await session.get(ConfigEntry, key)
    return None if entry is None else _render(entry)


async def get_value(session: AsyncSession, vault: Vault, key: str) -> ConfigValue:
    """The plain value of ``key`` for server-side use (secrets decrypted), None when unset."""
    entry = await session.get(ConfigEntry, key)
    if entry is None or entry.value is None:
        return None
    if entry.encrypted:
        return _decode(vault.decrypt(entry.value, context=_context(key)))
    return _decode(entry.value)


async def get_values(
    session: AsyncSession, vault: Vault, keys: Iterable[str]
) -> dict[str, ConfigValue]:
    """The plain values of the set ``keys`` in one query (secrets decrypted)."""
    entries = await session.execute(select(ConfigEntry).where(ConfigEntry.key.in_(list(keys))))
    values: dict[str, ConfigValue] = {}
    for entry in entries.scalars():
        if entry.value is None:
            continue
        text = (
            vault.decrypt(entry.value, context=_context(entry.key))
            if entry.encrypted
            else entry.value
        )
        values[entry.key] = _decode(text)
    return values


async def put_value(session: AsyncSession, vault: Vault, key: str, value: ConfigValue) -> None:
    """Set ``key`` (None removes it, as in the original); secret keys are encrypted."""
    if value is None:
        await session.execute(delete(ConfigEntry).where(ConfigEntry.key == key))
        return
    text = json.dumps(value)
    encrypted = is_secret(key)
    if encrypted:
        text = vault.encrypt(text, context=_context(key))
    entry = await session.get(ConfigEntry, key)
    if entry is None:
        session.add(ConfigEntry(key=key, value=text, encrypted=encrypted))
    else:
        entry.value, entry.encrypted = text, encrypted
    await session.flush()


async def patch(session: AsyncSession, vault: Vault, data: Mapping[str, ConfigValue]) -> None:
    """Merge ``data`` into the store (null values remove their key)."""
    for key, value in data.items():
        if key != SALT_KEY:
            await put_value(session, vault, key, value)
    if any(is_auth_key(k) for k in data):
        await clear_external_ids(session)


async def replace(session: AsyncSession, vault: Vault, data: Mapping[str, ConfigValue]) -> None:
    """Wipe every key but the salt, then set ``data``."""
    await session.execute(delete(ConfigEntry).where(ConfigEntry.key != SALT_KEY))
    for key, value in data.items():
        if key != SALT_KEY:
            await put_value(session, vault, key, value)
    await clear_external_ids(session)


async def delete_all(session: AsyncSession) -> None:
    """Remove every key but the salt."""
    await session.execute(delete(ConfigEntry).where(ConfigEntry.key != SALT_KEY))
    await clear_external_ids(session)


async def delete_one(session: AsyncSession, key: str) -> None:
    """Remove ``key``; unknown keys and the salt are a no-op."""
    if key == SALT_KEY:
        return
    await session.execute(delete(ConfigEntry).where(ConfigEntry.key == key))
    if is_auth_key(key):
        await clear_external_ids(session)


async def seed_defaults(
    session: AsyncSession, vault: Vault, defaults: Iterable[tuple[str, ConfigValue]]
) -> None:
    """Set each default whose key is still unset; existing keys are never overwritten."""
    for key, value in defaults:
        if value is not None and await session.get(ConfigEntry, key) is None:
            await put_value(session, vault, key, value)


async def clear_external_ids(session: AsyncSession) -> None:
    """Unlink every user from the OAuth2 provider: its settings changed, old ids may not match."""
    await session.execute(
        update(User).where(User.external_id.is_not(None)).values(external_id=None)
    )
