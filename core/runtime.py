"""Everything a process role needs at hand: settings, database, vault, job sender."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Settings
from core.jobs import JobSender
from core.node_rpc import NodeRpc
from core.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from core.vault import Vault, load_vault
from models.db import Database

VERSION = "1.5.2"


@dataclass
class Runtime:
    """Process-wide services, built once by the command that starts the role."""

    settings: Settings
    db: Database
    vault: Vault
    sender: JobSender
    rate_limiter: RateLimiter
    # Reaches agents: in-process by default, through Redis when built with a Redis URL.
    node_rpc: NodeRpc = field(default_factory=NodeRpc)


def build_runtime(settings: Settings, sender: JobSender, *, embedded: bool = False) -> Runtime:
    """Wire a runtime from settings; only the embedded master may generate its vault key."""
    vault = load_vault(
        settings.vault_key, settings.vault_old_keys, settings.data_dir, generate=embedded
    )
    limiter: RateLimiter
    if settings.redis_url:
        from core.redis_client import async_redis

        limiter = RedisRateLimiter(
            async_redis(settings.redis_url),
            settings.token_rate_limit,
            settings.token_rate_window,
        )
    else:
        limiter = MemoryRateLimiter(settings.token_rate_limit, settings.token_rate_window)
    db = Database(settings.resolved_database_url)
    node_rpc: NodeRpc
    if settings.redis_url:
        from core.rpc_redis import RedisNodeRpc

        node_rpc = RedisNodeRpc(settings.redis_url, lambda: db)
    else:
        from core.node_rpc import shared_local

        # The embedded workers run in this process and must see the API's sockets.
        node_rpc = shared_local()
    return Runtime(
        settings=settings,
        db=db,
        vault=vault,
        sender=sender,
        rate_limiter=limiter,
        node_rpc=node_rpc,
    )
