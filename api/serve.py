"""``kontena-master api``: the API process behind a load balancer."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from core.config import Settings
from core.runtime import build_runtime
from core.vault_check import check_vault_key
from workers.broker import DramatiqSender, build_broker


def serve_api(settings: Settings) -> int:
    """Serve the API with uvicorn until SIGTERM/SIGINT."""
    runtime = build_runtime(settings, DramatiqSender(build_broker(settings)))

    async def close_db() -> None:
        await runtime.db.dispose()

    # A wrong key stops the process before it serves anything.
    check_vault_key(settings.resolved_database_url, runtime.vault)
    app = create_app(runtime, on_shutdown=[close_db])
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        # Agent frames are small MessagePack messages: per-message deflate saves little and
        # costs ~50 KB of compressor state per socket (1,000 agents: ~45 MB).
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
    return 0
