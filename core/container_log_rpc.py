"""Agent → master container log methods (reference §5.5): a stream's cursor, a batch of lines.

The agent socket passes the master's settings in ``session.info["settings"]`` so lines past
the retention age are not stored only to be pruned.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.container_logs import log_cursors, store_batch
from core.node_updates import AgentError, agent_method
from core.protocol import LOG_BATCH_METHOD, LOG_CURSOR_METHOD, LogLine
from models import Node
from models.base import utcnow

MAX_BATCH_LINES = 5_000


@agent_method(LOG_CURSOR_METHOD)
async def get_cursor(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, container_id)`` → ``{stdout: [time_ns, seq] | None, stderr: …}``."""
    if len(params) < 2 or not isinstance(params[1], str) or not params[1]:
        raise AgentError(400, "params must be [node_id, container_id]")
    return await log_cursors(session, node, params[1])


@agent_method(LOG_BATCH_METHOD)
async def save_batch(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, [LogLine])`` → the new lines stored once each; ``{"stored": n}``."""
    if len(params) < 2 or not isinstance(params[1], list):
        raise AgentError(400, "params must be [node_id, [line]]")
    if len(params[1]) > MAX_BATCH_LINES:
        raise AgentError(413, f"at most {MAX_BATCH_LINES} lines per batch")
    try:
        lines = msgspec.convert(params[1], list[LogLine], strict=False)
    except msgspec.ValidationError as exc:
        raise AgentError(400, f"invalid log line: {exc}") from exc
    settings = session.info.get("settings")
    oldest = None
    if isinstance(settings, Settings):
        oldest = utcnow() - timedelta(days=settings.container_log_retention_days)
    try:
        stored = await store_batch(session, node, lines, oldest)
    except ValueError as exc:  # a timestamp that is not RFC 3339
        raise AgentError(400, f"invalid log line: {exc}") from exc
    return {"stored": stored}
