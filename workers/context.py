"""What actors need at hand in a worker process: settings, database, vault, job sender.

Actors run on the event loop thread of Dramatiq's AsyncIO middleware, not on the loop of the
process that configured them, so the database engine is created lazily on that loop (an asyncpg
connection belongs to the loop that opened it) and disposed before the loop stops.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from core.config import Settings
from core.jobs import JobSender
from core.node_rpc import NodeRpc
from core.vault import Vault, load_vault
from models.db import Database

log = logging.getLogger(__name__)

_lock = threading.Lock()
_settings: Settings | None = None
_broker: dramatiq.Broker | None = None
_database: Database | None = None
_database_loop: asyncio.AbstractEventLoop | None = None
_vault: Vault | None = None
_node_rpc: NodeRpc | None = None
_node_rpc_loop: asyncio.AbstractEventLoop | None = None


def configure(settings: Settings, broker: dramatiq.Broker | None = None) -> None:
    """Set the settings (and broker) actors of this process use; called at boot."""
    global _settings, _broker, _vault
    with _lock:
        _settings = settings
        _vault = None
        if broker is not None:
            _broker = broker


def settings() -> Settings:
    """The settings this worker was booted with."""
    if _settings is None:
        raise RuntimeError("workers.context.configure() was not called at boot")
    return _settings


def database() -> Database:
    """The database for the running loop, created on first use in that loop."""
    global _database, _database_loop
    loop = asyncio.get_running_loop()
    url = settings().resolved_database_url
    with _lock:
        if _database is None or _database_loop is not loop or _database.url != url:
            # An engine made on another (stopped) loop cannot be reused; forget it.
            _database = Database(url, pool_size=settings().worker_threads)
            _database_loop = loop
        return _database


def vault() -> Vault:
    """The vault, built from the configured key (workers never generate one)."""
    global _vault
    with _lock:
        if _vault is None:
            s = settings()
            _vault = load_vault(s.vault_key, s.vault_old_keys, s.data_dir, generate=False)
        return _vault


def sender() -> JobSender:
    """Sends follow-up jobs through this worker's broker."""
    from workers.broker import DramatiqSender

    return DramatiqSender(_broker or dramatiq.get_broker())


def node_rpc() -> NodeRpc:
    """Reaches agents: through Redis, or the embedded API's sockets in this very process."""
    global _node_rpc, _node_rpc_loop
    if not settings().redis_url:
        from core.node_rpc import shared_local

        return shared_local()
    loop = asyncio.get_running_loop()
    with _lock:
        if _node_rpc is None or _node_rpc_loop is not loop:
            from core.rpc_redis import RedisNodeRpc

            # Like the database, its Redis connections belong to the loop that opened them;
            # it subscribes lazily on the first call.
            _node_rpc = RedisNodeRpc(settings().redis_url, database)
            _node_rpc_loop = loop
        return _node_rpc


async def dispose() -> None:
    """Close the database and node RPC of the running loop."""
    global _database, _database_loop, _node_rpc, _node_rpc_loop
    with _lock:
        database, _database, _database_loop = _database, None, None
        rpc, _node_rpc, _node_rpc_loop = _node_rpc, None, None
    if rpc is not None:
        await rpc.stop()
    if database is not None:
        await database.dispose()


class WorkerContext(Middleware):
    """Ties the context to the worker's lifetime: knows the broker, disposes the database.

    Listed after AsyncIO: ``after_*`` hooks run in reverse order, so this one disposes the
    database while AsyncIO's event loop is still running.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _broker
        _broker = broker

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None or (_database is None and _node_rpc is None):
            return
        try:
            loop_thread.run_coroutine(dispose())
        except Exception:
            log.warning("closing the worker's database failed", exc_info=True)
