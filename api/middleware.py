"""App-wide response hooks: the version header on every response, errors included."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from core.runtime import VERSION


async def add_version_header(message: Message, scope: Scope) -> None:
    """Add ``X-Kontena-Version`` to every HTTP response (a ``before_send`` hook)."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["X-Kontena-Version"] = VERSION


async def reject_nul_characters(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """400 for a NUL character in the path or query: no database stores it in text."""
    query = request.scope.get("query_string", b"")
    if "\x00" in request.scope["path"] or b"%00" in query or b"\x00" in query:
        return Response({"error": "Request contains a NUL character"}, status_code=400)
    return None
