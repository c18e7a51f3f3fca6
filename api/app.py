"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.types import ControllerRouterHandler, LifespanHook

from api import controllers
from api.agent_ws import agent_socket
from api.controllers.root import RootController
from api.deps import provide_principal, provide_uow
from api.errors import EXCEPTION_HANDLERS
from api.middleware import add_version_header, reject_nul_characters
from api.observability import observe_requests
from core.runtime import VERSION, Runtime


def route_handlers() -> list[ControllerRouterHandler]:
    """Every controller of the API, in one explicit list."""
    handlers: list[ControllerRouterHandler] = [RootController, agent_socket]
    handlers.extend(controllers.registered())
    return handlers


def create_app(
    runtime: Runtime,
    *,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
) -> Litestar:
    """Build the API around an already-configured runtime."""
    app = Litestar(
        route_handlers=route_handlers(),
        dependencies={"uow": Provide(provide_uow), "principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_version_header],
        before_request=reject_nul_characters,
        middleware=[observe_requests],  # request ids and HTTP metrics
        request_max_body_size=runtime.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Kontena Master API",
            version=VERSION,
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        # Node RPC listens for calls to the agents this process holds while it serves.
        on_startup=[runtime.node_rpc.start, *on_startup],
        on_shutdown=[*on_shutdown, runtime.node_rpc.stop],
        debug=False,
        logging_config=None,  # the process role configures logging once, for every library
    )
    app.state.runtime = runtime
    return app
