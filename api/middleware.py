"""App-wide response hooks: the version header on every response, errors included."""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from core.runtime import VERSION


async def add_version_header(message: Message, scope: Scope) -> None:
    """Add ``X-Kontena-Version`` to every HTTP response (a ``before_send`` hook)."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["X-Kontena-Version"] = VERSION
