"""One place that renders every error in Kontena's body shapes."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import IntegrityError

from core.errors import KontenaError

log = logging.getLogger(__name__)


def kontena_error(_: Request[Any, Any, Any], exc: KontenaError) -> Response[object]:
    """Render a domain error with its status, body and headers."""
    return Response(
        exc.body, status_code=exc.status, headers=exc.headers, media_type=MediaType.JSON
    )


def not_found(_: Request[Any, Any, Any], exc: NotFoundException) -> Response[object]:
    """Unknown paths answer like unknown resources."""
    return Response({"error": "Not found"}, status_code=404)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[object]:
    """Litestar's own client errors (405, 413, bad parameters) in Kontena's shape."""
    if isinstance(exc, RequestEntityTooLarge):
        return Response({"error": "Request body too large"}, status_code=413)
    if isinstance(exc, ValidationException):
        return Response({"error": _validation_tree(exc)}, status_code=422)
    if isinstance(exc, MethodNotAllowedException):
        return Response({"error": "Method not allowed"}, status_code=405, headers=exc.headers)
    return Response({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _validation_tree(exc: ValidationException) -> dict[str, str] | str:
    """Query/path parameter errors name the parameter."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    tree = {
        str(item.get("key")): str(item.get("message"))
        for item in extra
        if isinstance(item, dict) and item.get("key")
    }
    return tree or exc.detail


def integrity_error(_: Request[Any, Any, Any], exc: IntegrityError) -> Response[object]:
    """A unique-constraint race the validation could not see: a conflict, never a 500."""
    log.info("integrity error: %s", exc.orig)
    return Response({"error": "Conflicts with an existing resource"}, status_code=409)


def internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[object]:
    """Anything unexpected: logged with its traceback, answered without details."""
    log.exception("unhandled error", exc_info=exc)
    return Response({"message": "Internal server error"}, status_code=500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    KontenaError: kontena_error,
    NotFoundException: not_found,
    HTTPException: http_error,
    IntegrityError: integrity_error,
    Exception: internal_error,
}
