"""Shared fixtures: real PostgreSQL and Redis, the app, and users with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from litestar import Litestar
from sqlalchemy import select, text

from api.app import create_app
from core.access_tokens import issue_token
from core.config import Settings, load_settings
from core.rate_limit import RedisRateLimiter
from core.runtime import Runtime
from core.vault import MasterKey, Vault
from models import Grid, Role, User
from models.db import Database
from tests.fixtures.db import reset_schema, truncate_statement
from tests.fixtures.env import database_url, redis_url
from tests.fixtures.server import serve
from workers.broker import DramatiqSender, build_broker

# Docker daemon fixtures: docker_hosts, docker_clients, busybox_image, cleanup_containers.
pytest_plugins = ["tests.fixtures.docker", "tests.fixtures.acme", "tests.fixtures.callers"]

TEST_VAULT_KEY = "test-vault-key-0123456789abcdef"


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at this run's PostgreSQL and Redis."""
    return load_settings(
        {},
        database_url=database_url(),
        redis_url=redis_url(),
        vault_key=TEST_VAULT_KEY,
        data_dir=str(tmp_path_factory.mktemp("data")),
    )


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    """The migrated database, shared by the whole run."""
    await reset_schema(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    yield database
    await database.dispose()


@pytest.fixture(autouse=True)
async def _clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty every table a test wrote to, after the test."""
    yield
    if "db" in request.fixturenames:
        database: Database = request.getfixturevalue("db")
        async with database.engine.begin() as conn:
            await conn.execute(text(truncate_statement()))


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client on the test database; flushed after the test."""
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def vault() -> Vault:
    """The test vault."""
    return Vault(MasterKey.from_secret(TEST_VAULT_KEY))


@pytest.fixture
def runtime(settings: Settings, db: Database, vault: Vault, redis_client: redis.Redis) -> Runtime:
    """A runtime wired to the real database, vault and Redis broker."""
    from redis.asyncio import Redis as AsyncRedis

    return Runtime(
        settings=settings,
        db=db,
        vault=vault,
        sender=DramatiqSender(build_broker(settings)),
        rate_limiter=RedisRateLimiter(
            AsyncRedis.from_url(settings.redis_url),
            settings.token_rate_limit,
            settings.token_rate_window,
        ),
    )


@pytest.fixture
def app(runtime: Runtime) -> Litestar:
    """The API under test."""
    return create_app(runtime)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app served by uvicorn on loopback, in the test's loop."""
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield http


@dataclass
class Caller:
    """A user and a bearer token for it."""

    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for this caller."""
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_user(db: Database):  # type: ignore[no-untyped-def]
    """Create a user with roles, grid memberships and a token: ``await make_user(...)``."""

    async def factory(
        email: str,
        *,
        roles: tuple[str, ...] = (),
        grids: tuple[str, ...] = (),
        expires_in: int | None = None,
    ) -> Caller:
        async with db.session() as session:
            role_rows = (
                (await session.execute(select(Role).where(Role.name.in_(roles)))).scalars().all()
            )
            user = User(email=email, name=email.split("@")[0], roles=list(role_rows))
            session.add(user)
            await session.flush()
            if grids:
                from models import grid_users

                grid_rows = (
                    (await session.execute(select(Grid).where(Grid.name.in_(grids))))
                    .scalars()
                    .all()
                )
                await session.execute(
                    grid_users.insert(), [{"grid_id": g.id, "user_id": user.id} for g in grid_rows]
                )
            issued = issue_token(session, user, expires_in=expires_in)
            await session.commit()
            assert issued.access_token
            return Caller(user=user, token=issued.access_token)

    return factory


@pytest.fixture
async def admin(make_user) -> Caller:  # type: ignore[no-untyped-def]
    """The local bootstrap admin with a token."""
    return await make_user("admin")  # email `admin` is master admin by definition
