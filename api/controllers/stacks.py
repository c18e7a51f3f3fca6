"""Stacks: ``/v1/grids/:grid/stacks`` and ``/v1/stacks/:grid/:stack`` (reference §2.5).

Every route is for grid members, as for services. Deploy answers 200 with a stack deploy in
``created``; its job is sent only after the request's transaction commits.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.response import Stream

from api.audit import audit
from api.controllers.container_logs import stack_container_logs
from api.controllers.services import render_services
from api.deps import get_runtime, load_grid
from api.schemas.event_logs import EventLogList, event_log_view
from api.schemas.stacks import (
    RevisionList,
    StackDeployList,
    StackDeployView,
    StackList,
    StackView,
    revision_view,
    stack_deploy_view,
    stack_view,
)
from core import logs, stack_deploy, stack_removal, stacks
from core.auth import Principal
from core.errors import Invalid, NotFound
from core.stack_spec import StackCreate, StackLabels, StackUpdate
from core.unit_of_work import UnitOfWork
from core.validation import decode_body
from models import EventLog, Grid, Stack, StackDeploy
from models.services import NULL_STACK


async def render_stack(uow: UnitOfWork, grid: Grid, stack: Stack) -> StackView:
    """A stack with its latest revision, derived state, services, parent and children."""
    session = uow.session
    rows = await stacks.stack_services(session, grid, stack.name)
    revision = await stacks.latest_revision(session, stack) if stack.id else None
    state = await stacks.stack_state(session, stack.id, rows)
    parent_exists = bool(stack.parent_name) and (
        await stacks.find_stack(session, grid, str(stack.parent_name)) is not None
    )
    kids = await stacks.children(session, grid, stack.name) if stack.id else []
    views = await render_services(uow, grid, rows)
    return stack_view(grid, stack, revision, state, views, parent_exists, kids)


def _null_stack(grid: Grid) -> Stack:
    """The implicit stack of stack-less services, never stored (Kontena kept a row for it)."""
    return Stack(
        name=NULL_STACK,
        grid_id=grid.id,
        labels=[],
        created_at=grid.created_at,
        updated_at=grid.created_at,
    )


async def render_deploys(
    uow: UnitOfWork, grid: Grid, stack_name: str, rows: list[StackDeploy]
) -> list[StackDeployView]:
    """Stack deploys with their service deploys, in two queries."""
    found = await stack_deploy.service_deploys(uow.session, rows)
    return [stack_deploy_view(grid, stack_name, row, found) for row in rows]


def _audit(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal,
    grid: Grid,
    name: str,
    event: str,
    body: bytes | None = None,
) -> None:
    audit(
        request,
        uow,
        principal,
        resource_type=stacks.RESOURCE,
        event_name=event,
        resource_id=stacks.stack_path(grid.name, name),
        resource_name=name,
        grid=grid,
        body=body,
    )


class GridStackController(Controller):
    """A grid's stacks: list and create."""

    path = "/v1/grids/{grid:str}/stacks"
    tags = ["stacks"]

    @get("/", summary="List stacks")
    async def list_stacks(self, grid: str, uow: UnitOfWork, principal: Principal) -> StackList:
        """The grid's stacks by name."""
        grid_row = await load_grid(uow, principal, grid)
        rows = await stacks.list_stacks(uow.session, grid_row)
        return StackList(stacks=[await render_stack(uow, grid_row, row) for row in rows])

    @post("/", summary="Create a stack", status_code=201)
    async def create_stack(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> StackView:
        """Create the stack and its services (nothing is deployed yet)."""
        grid_row = await load_grid(uow, principal, grid)
        body = await request.body()
        data = decode_body(body, StackCreate)
        row = await stacks.create_stack(uow.session, principal, grid_row, data)
        _audit(request, uow, principal, grid_row, row.name, "create", body)
        return await render_stack(uow, grid_row, row)


class StackController(Controller):
    """One stack: read, update, labels, remove, deploy, stop, restart, deploys, events."""

    path = "/v1/stacks/{grid:str}/{stack:str}"
    tags = ["stacks"]

    async def _load(
        self, uow: UnitOfWork, principal: Principal, grid: str, stack: str
    ) -> tuple[Grid, Stack]:
        grid_row = await load_grid(uow, principal, grid)
        if stack == NULL_STACK:
            return grid_row, _null_stack(grid_row)
        return grid_row, await stacks.get_stack(uow.session, grid_row, stack)

    async def _load_real(
        self, uow: UnitOfWork, principal: Principal, grid: str, stack: str, verb: str
    ) -> tuple[Grid, Stack]:
        grid_row = await load_grid(uow, principal, grid)
        stack_deploy.refuse_null(stack, verb)
        return grid_row, await stacks.get_stack(uow.session, grid_row, stack)

    @get("/", summary="Get a stack")
    async def get_stack(
        self, grid: str, stack: str, uow: UnitOfWork, principal: Principal
    ) -> StackView:
        """One stack (404 ``{}``); ``null`` shows the stack-less services."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        return await render_stack(uow, grid_row, row)

    @put("/", summary="Update a stack")
    async def update_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> StackView:
        """A new revision when something changed; services change when the stack deploys."""
        grid_row, row = await self._load_real(uow, principal, grid, stack, "update")
        body = await request.body()
        data = decode_body(body, StackUpdate)
        await stacks.update_stack(uow.session, principal, grid_row, row, data)
        _audit(request, uow, principal, grid_row, row.name, "update", body)
        return await render_stack(uow, grid_row, row)

    @patch("/", summary="Change a stack's labels")
    async def patch_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> StackView:
        """Replace the labels (``[]`` clears them)."""
        grid_row, row = await self._load_real(uow, principal, grid, stack, "update")
        body = await request.body()
        data = decode_body(body, StackLabels)
        stacks.set_labels(row, data.labels)
        _audit(request, uow, principal, grid_row, row.name, "update", body)
        return await render_stack(uow, grid_row, row)

    @delete("/", summary="Remove a stack", status_code=200)
    async def delete_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Answers ``{}`` at once; a job stops and removes the services, then the stack."""
        grid_row = await load_grid(uow, principal, grid)
        if stack == NULL_STACK:
            raise Invalid({"stack": "Cannot delete default stack"})
        row = await stacks.get_stack(uow.session, grid_row, stack)
        await stack_removal.delete_stack(uow, principal, grid_row, row)
        _audit(request, uow, principal, grid_row, row.name, "delete")
        return {}

    @post("/deploy", summary="Deploy a stack", status_code=200)
    async def deploy_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> StackDeployView:
        """Apply the latest revision and queue the stack deploy (state ``created``)."""
        grid_row, row = await self._load_real(uow, principal, grid, stack, "deploy")
        deploy = await stack_deploy.deploy_stack(uow, principal, grid_row, row)
        _audit(request, uow, principal, grid_row, row.name, "deploy")
        return (await render_deploys(uow, grid_row, row.name, [deploy]))[0]

    @post("/stop", summary="Stop a stack's services", status_code=200)
    async def stop_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Stop every service of the stack."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        await stack_deploy.stop_stack(uow, principal, grid_row, row.name)
        _audit(request, uow, principal, grid_row, row.name, "stop")
        return {}

    @post("/restart", summary="Restart a stack's services", status_code=200)
    async def restart_stack(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Restart every service of the stack."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        await stack_deploy.restart_stack(uow, principal, grid_row, row.name)
        _audit(request, uow, principal, grid_row, row.name, "restart")
        return {}

    @get("/deploys", summary="List a stack's deploys")
    async def list_deploys(
        self, grid: str, stack: str, uow: UnitOfWork, principal: Principal
    ) -> StackDeployList:
        """The stack's deploys, newest first."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        rows = list(await stack_deploy.list_deploys(uow.session, row)) if row.id else []
        return StackDeployList(deploys=await render_deploys(uow, grid_row, row.name, rows))

    @get("/deploys/{deploy_id:str}", summary="Get a stack deploy")
    async def get_deploy(
        self, grid: str, stack: str, deploy_id: str, uow: UnitOfWork, principal: Principal
    ) -> StackDeployView:
        """One stack deploy with its service deploys (404 ``Not found``)."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        if not row.id:
            raise NotFound()  # the null stack has no deploys
        deploy = await stack_deploy.get_deploy(uow.session, row, deploy_id)
        return (await render_deploys(uow, grid_row, row.name, [deploy]))[0]

    @get("/revisions", summary="List a stack's revisions")
    async def list_revisions(
        self, grid: str, stack: str, uow: UnitOfWork, principal: Principal
    ) -> RevisionList:
        """Every stored revision, newest first (an addition to Kontena's API)."""
        _, row = await self._load(uow, principal, grid, stack)
        rows = await stacks.list_revisions(uow.session, row) if row.id else []
        return RevisionList(revisions=[revision_view(item) for item in rows])

    @get("/event_logs", summary="Get a stack's event logs")
    async def list_event_logs(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """The events of the stack and its services, paged or followed like a grid's."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        query = logs.parse_log_query(request.query_params)
        base = logs.event_log_select(grid_row.id, stacks=[row.name])
        if not query.follow:
            rows = await logs.fetch_logs(uow.session, base, logs.EVENT_LOG_TABLE, query)
            return Response(EventLogList(logs=[event_log_view(grid_row.name, r) for r in rows]))
        grid_name = grid_row.name

        def render(entry: EventLog) -> bytes:
            return msgspec.json.encode(event_log_view(grid_name, entry))

        stream = logs.follow_logs(
            get_runtime(state).db.session,
            base,
            logs.EVENT_LOG_TABLE,
            query,
            render,
            lambda entry: entry.id,
        )
        return Stream(stream, media_type=MediaType.JSON)

    @get("/container_logs", summary="Get a stack's container logs")
    async def list_container_logs(
        self,
        grid: str,
        stack: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Response[Any]:
        """The log lines of the stack's containers (filter ``container``), paged or followed."""
        grid_row, row = await self._load(uow, principal, grid, stack)
        return await stack_container_logs(state, uow, grid_row, row.name, request.query_params)


ROUTES = [GridStackController, StackController]
