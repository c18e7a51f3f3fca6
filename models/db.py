"""Engine and session factory for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Insert, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def is_sqlite(url: str) -> bool:
    """True for an embedded SQLite database URL."""
    return url.startswith("sqlite")


class Database:
    """One engine and its session factory; make one per event loop."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {
            "echo": echo,
            # msgspec decodes JSON columns several times faster than the json module.
            "json_serializer": _json_dumps,
            "json_deserializer": msgspec.json.decode,
        }
        if not is_sqlite(url):
            # No pre-ping: it costs a round trip on every checkout; recycling old connections
            # and retrying at the edges is cheaper than pinging on the hot path.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sqlite(self) -> bool:
        """True when this is the embedded SQLite database."""
        return is_sqlite(self.url)

    def session(self) -> AsyncSession:
        """A new session; the caller commits."""
        return self.sessions()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def insert_ignoring_conflict(session: AsyncSession, model: type[Any], **values: Any) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING for PostgreSQL and SQLite alike."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).values(**values).on_conflict_do_nothing()
