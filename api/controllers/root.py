"""The banner, the health check and the retired password login."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from sqlalchemy import text

from api.deps import get_runtime
from core.runtime import VERSION


class Banner(msgspec.Struct):
    """What ``GET /`` answers."""

    name: str
    tagline: str
    version: str


class Pong(msgspec.Struct):
    """What ``GET /v1/ping`` answers."""

    message: str


class RootController(Controller):
    """Unauthenticated endpoints."""

    @get("/", summary="Server banner")
    async def banner(self) -> Banner:
        """Name and version of the master."""
        return Banner(name="Kontena Master", tagline="The Container Platform", version=VERSION)

    @get("/v1/ping", summary="Health check")
    async def ping(self, state: State) -> Response[Any]:
        """``pong`` when the database answers, 500 otherwise."""
        try:
            async with get_runtime(state).db.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return Response({"error": "Internal server error"}, status_code=500)
        return Response(Pong(message="pong"))

    @post("/v1/auth", summary="Password login (unsupported)", status_code=403)
    async def password_auth(self, request: Request[Any, Any, Any]) -> str:
        """Kontena refused password logins; so do we, with the same message."""
        return (
            "Authentication with username and password is not supported. "
            "Use an access token or `kontena master login`."
        )
