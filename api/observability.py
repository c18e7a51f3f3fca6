"""ASGI middleware: a request id per request (logged and echoed) and HTTP metrics."""

from __future__ import annotations

import re
import secrets
import time

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.logging_setup import REQUEST_ID
from core.metrics import HTTP

HEADER = "X-Request-Id"
# A caller's id is kept only when it is short and plain, so it cannot forge log lines.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.match(text) else None
    return None


def observe_requests(app: ASGIApp) -> ASGIApp:
    """Wrap ``app``: set the request id, echo it, time the request by route template."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[HEADER] = request_id
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            route = scope.get("path_template") or "unmatched"
            HTTP.observe(str(scope.get("method", "")), route, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    return middleware
