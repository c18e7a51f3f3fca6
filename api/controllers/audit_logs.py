"""``/v1/audit_logs`` (master admins) and ``/v1/grids/:name/audit_log`` (grid members)."""

from __future__ import annotations

from litestar import Controller, get

from api.deps import load_grid
from api.schemas.audit_logs import AuditLogList, render_audit_log
from core.audit import audit_limit, list_audit_logs
from core.auth import Principal
from core.errors import AccessDenied
from core.unit_of_work import UnitOfWork


class AuditLogController(Controller):
    """Who changed what: the newest ``limit`` entries (1..3000, default 500), oldest first."""

    tags = ["audit logs"]

    @get("/v1/audit_logs", summary="List audit log entries")
    async def list_audit_logs(
        self, uow: UnitOfWork, principal: Principal, limit: str | None = None
    ) -> AuditLogList:
        """Every grid's entries and the master's own (config changes), for master admins."""
        # The original meant a 403 here but crashed with a 500 instead.
        if not principal.master_admin:
            raise AccessDenied()
        rows = await list_audit_logs(uow.session, limit=audit_limit(limit))
        return AuditLogList(logs=[render_audit_log(row) for row in rows])

    @get("/v1/grids/{name:str}/audit_log", summary="List a grid's audit log entries")
    async def list_grid_audit_logs(
        self, name: str, uow: UnitOfWork, principal: Principal, limit: str | None = None
    ) -> AuditLogList:
        """The entries of one grid, for its members."""
        grid = await load_grid(uow, principal, name)
        rows = await list_audit_logs(uow.session, limit=audit_limit(limit), grid=grid)
        return AuditLogList(logs=[render_audit_log(row) for row in rows])


ROUTES = [AuditLogController]
