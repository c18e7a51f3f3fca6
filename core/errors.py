"""The error hierarchy; each error knows its HTTP status and Kontena's body shape."""

from __future__ import annotations

from typing import Any

ErrorTree = dict[str, Any]


class KontenaError(Exception):
    """Base error: ``status`` and the JSON ``body`` one handler renders."""

    status = 500

    def __init__(self, body: Any, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.body = body
        self.headers = headers or {}


class BadRequest(KontenaError):
    """400: the request cannot be understood (bad JSON, missing OAuth parameter)."""

    status = 400


class InvalidJson(BadRequest):
    """400 ``{"error":"Invalid json"}``."""

    def __init__(self) -> None:
        super().__init__({"error": "Invalid json"})


class InvalidToken(KontenaError):
    """403 with the OAuth2 ``invalid_token`` body and a ``WWW-Authenticate`` header."""

    status = 403

    def __init__(self, description: str = "Invalid token") -> None:
        challenge = (
            'Bearer realm="kontena_master", error="invalid_token", '
            f'error_description="{description}"'
        )
        super().__init__(
            {"error": "invalid_token", "error_description": description},
            headers={"WWW-Authenticate": challenge},
        )


class Forbidden(KontenaError):
    """403 with a body given by the caller (Kontena uses several shapes)."""

    status = 403


class AccessDenied(Forbidden):
    """403 ``{"error":"Access denied"}`` for grid-scoped paths."""

    def __init__(self) -> None:
        super().__init__({"error": "Access denied"})


class NotFound(KontenaError):
    """404, by default ``{"error":"Not found"}``."""

    status = 404

    def __init__(self, message: str = "Not found") -> None:
        super().__init__({"error": message})


class Conflict(KontenaError):
    """409: the request clashes with the current state."""

    status = 409


class PayloadTooLarge(KontenaError):
    """413: the request body is larger than the configured limit."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__({"error": f"Request body larger than {limit} bytes"})


class Invalid(KontenaError):
    """422 ``{"error": <tree>}`` where the tree names the bad fields."""

    status = 422

    def __init__(self, tree: ErrorTree | str) -> None:
        super().__init__({"error": tree})
        self.tree = tree


class TooManyRequests(KontenaError):
    """429 ``{"error":"too_many_requests"}``."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__({"error": "too_many_requests"}, headers={"Retry-After": str(retry_after)})


class PermanentJobError(Exception):
    """Raised by actors for failures that a retry cannot fix."""
