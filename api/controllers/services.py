"""Services: ``/v1/grids/:grid/services`` and ``/v1/services/:grid/:stack/:service``.

Every route is for grid members. Deploy and scale answer 200 with a deploy object in
``created``; its job is sent only after the request's transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from sqlalchemy import select

from api.audit import audit
from api.deps import load_grid, load_service
from api.schemas.services import (
    DeployList,
    DeployView,
    InstanceList,
    InstanceView,
    ServiceList,
    ServiceView,
    deploy_view,
    instance_view,
    service_view,
)
from core import service_actions, services
from core.auth import Principal
from core.service_spec import ServiceCreate, ServiceUpdate
from core.unit_of_work import UnitOfWork
from core.validation import decode_body
from models import Grid, Service


class DeployBody(msgspec.Struct):
    """``POST …/deploy``: ``force`` recreates every instance."""

    force: bool = False


class ScaleBody(msgspec.Struct):
    """``POST …/scale``."""

    instances: Annotated[int, msgspec.Meta(ge=0)]


async def render_services(
    uow: UnitOfWork, grid: Grid, rows: Sequence[Service]
) -> list[ServiceView]:
    """Render services with their instance counts and link targets, in three queries."""
    counts = await services.instance_counts(uow.session, [row.id for row in rows])
    targets = {
        str(link.get("service_id"))
        for row in rows
        for link in row.spec.get("links") or []
        if link.get("service_id")
    }
    linked: dict[str, Service] = {}
    if targets:
        query = select(Service).where(Service.id.in_(targets), Service.state != services.REMOVING)
        linked = {row.id: row for row in (await uow.session.execute(query)).scalars()}
    return [
        service_view(grid, row, counts.get(row.id, services.InstanceCounts()), linked)
        for row in rows
    ]


def _audit(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal,
    grid: Grid,
    row: Service,
    event: str,
    body: bytes | None = None,
) -> None:
    audit(
        request,
        uow,
        principal,
        resource_type=services.RESOURCE,
        event_name=event,
        resource_id=services.service_path(grid.name, row),
        resource_name=row.name,
        grid=grid,
        body=body,
    )


class GridServiceController(Controller):
    """A grid's services: list (optionally one stack's) and create."""

    path = "/v1/grids/{grid:str}/services"
    tags = ["services"]

    @get("/", summary="List services")
    async def list_services(
        self, grid: str, uow: UnitOfWork, principal: Principal, stack: str | None = None
    ) -> ServiceList:
        """The grid's services, newest first; ``?stack=`` narrows to one stack."""
        grid_row = await load_grid(uow, principal, grid)
        rows = await services.list_services(uow.session, grid_row, stack)
        return ServiceList(services=await render_services(uow, grid_row, rows))

    @post("/", summary="Create a service", status_code=201)
    async def create_service(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> ServiceView:
        """Create a stack-less service (201)."""
        grid_row = await load_grid(uow, principal, grid)
        body = await request.body()
        data = decode_body(body, ServiceCreate)
        row = await services.create_service(uow.session, principal, grid_row, data)
        _audit(request, uow, principal, grid_row, row, "create", body)
        return (await render_services(uow, grid_row, [row]))[0]


class ServiceController(Controller):
    """One service: read, update, remove, actions, deploy objects and instances."""

    path = "/v1/services/{grid:str}/{stack:str}/{service:str}"
    tags = ["services"]

    @get("/", summary="Get a service")
    async def get_service(
        self, grid: str, stack: str, service: str, uow: UnitOfWork, principal: Principal
    ) -> ServiceView:
        """One service."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        return (await render_services(uow, grid_row, [row]))[0]

    @put("/", summary="Update a service")
    async def update_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> ServiceView:
        """Change the given attributes; lists are replaced whole."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        body = await request.body()
        data = decode_body(body, ServiceUpdate)
        await services.update_service(uow.session, principal, grid_row, row, data)
        _audit(request, uow, principal, grid_row, row, "update", body)
        await uow.session.flush()
        await uow.session.refresh(row)
        return (await render_services(uow, grid_row, [row]))[0]

    @delete("/", summary="Remove a service", status_code=200)
    async def delete_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove the service: answers ``{}`` at once; a job removes its containers."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        await services.delete_service(uow, principal, grid_row, row)
        _audit(request, uow, principal, grid_row, row, "delete")
        return {}

    @post("/deploy", summary="Deploy a service", status_code=200)
    async def deploy_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> DeployView:
        """Create a deploy (state ``created``) and queue it; ``force`` bumps the revision."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        body = await request.body()
        data = decode_body(body, DeployBody)
        deploy = await service_actions.deploy_service(
            uow, principal, grid_row, row, force=data.force
        )
        _audit(request, uow, principal, grid_row, row, "deploy", body)
        return deploy_view(grid_row, row, deploy)

    @post("/scale", summary="Scale a service", status_code=200)
    async def scale_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> DeployView:
        """Set the instance count and deploy."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        body = await request.body()
        data = decode_body(body, ScaleBody)
        deploy = await service_actions.scale_service(uow, principal, grid_row, row, data.instances)
        _audit(request, uow, principal, grid_row, row, "scale", body)
        return deploy_view(grid_row, row, deploy)

    @post("/start", summary="Start a service", status_code=200)
    async def start_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Desired state ``running`` for the service and its instances."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        await service_actions.set_service_state(uow, principal, grid_row, row, "running")
        _audit(request, uow, principal, grid_row, row, "start")
        return {}

    @post("/stop", summary="Stop a service", status_code=200)
    async def stop_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Desired state ``stopped`` for the service and its instances."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        await service_actions.set_service_state(uow, principal, grid_row, row, "stopped")
        _audit(request, uow, principal, grid_row, row, "stop")
        return {}

    @post("/restart", summary="Restart a service", status_code=200)
    async def restart_service(
        self,
        grid: str,
        stack: str,
        service: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Restart every placed instance."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        await service_actions.restart_service(uow, principal, grid_row, row)
        _audit(request, uow, principal, grid_row, row, "restart")
        return {}

    @get("/deploys", summary="List a service's deploys")
    async def list_deploys(
        self, grid: str, stack: str, service: str, uow: UnitOfWork, principal: Principal
    ) -> DeployList:
        """The service's deploys, newest first."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        rows = await service_actions.list_deploys(uow.session, row)
        return DeployList(deploys=[deploy_view(grid_row, row, item) for item in rows])

    @get("/deploys/{deploy_id:str}", summary="Get a service deploy")
    async def get_deploy(
        self,
        grid: str,
        stack: str,
        service: str,
        deploy_id: str,
        uow: UnitOfWork,
        principal: Principal,
    ) -> DeployView:
        """One deploy object (404 ``Not found``)."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        deploy = await service_actions.get_deploy(uow.session, row, deploy_id)
        return deploy_view(grid_row, row, deploy)

    @get("/instances", summary="List a service's instances")
    async def list_instances(
        self, grid: str, stack: str, service: str, uow: UnitOfWork, principal: Principal
    ) -> InstanceList:
        """The service's instances by number."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        items = await service_actions.list_instances(uow.session, row)
        return InstanceList(instances=_instances(grid_row, items))

    @get("/instances/{instance_id:str}", summary="Get a service instance")
    async def get_instance(
        self,
        grid: str,
        stack: str,
        service: str,
        instance_id: str,
        uow: UnitOfWork,
        principal: Principal,
    ) -> InstanceView:
        """One instance (404 ``Not found``)."""
        grid_row, row = await load_service(uow, principal, grid, stack, service)
        instance, node = await service_actions.get_instance(uow.session, row, instance_id)
        return instance_view(grid_row, instance, node)


def _instances(grid: Grid, items: Iterable[tuple[Any, Any]]) -> list[InstanceView]:
    return [instance_view(grid, instance, node) for instance, node in items]


ROUTES = [GridServiceController, ServiceController]
