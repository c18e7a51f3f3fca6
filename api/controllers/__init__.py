"""One controller module per resource; ``registered`` lists them for the app factory."""

from __future__ import annotations

import importlib

from litestar.types import ControllerRouterHandler

# Modules that define ``ROUTES``; each later issue adds its resource here.
MODULES = (
    "api.controllers.grids",
    "api.controllers.event_logs",
    "api.controllers.users",
    "api.controllers.grid_users",
    "api.controllers.oauth2",
    "api.controllers.external_login",
    "api.controllers.config",
    "api.controllers.audit_logs",
    "api.controllers.secrets",
    "api.controllers.registries",
    "api.controllers.nodes",
    "api.controllers.services",
    "api.controllers.service_stats",
    "api.controllers.stacks",
    "api.controllers.queues",
    "api.controllers.metrics",
    "api.controllers.certificates",
    "api.controllers.volumes",
    "api.controllers.container_logs",
    "api.controllers.service_event_logs",
)


def registered() -> list[ControllerRouterHandler]:
    """Collect the ``ROUTES`` of every controller module that exists yet."""
    handlers: list[ControllerRouterHandler] = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        handlers.extend(module.ROUTES)
    return handlers
