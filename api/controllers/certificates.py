"""Let's Encrypt: ``/v1/certificates/:grid/...``, domain authorizations and certificates.

Every ACME action is a job (ARCHITECTURE §5): the handler writes the work row, the job is sent
after the commit, and the answer is the row to poll.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State

from api.audit import audit
from api.deps import get_runtime, load_grid
from api.schemas.acme import (
    Account,
    CertificateList,
    CertificateRequestView,
    CertificateView,
    DomainAuthorizationList,
    DomainAuthorizationView,
    DomainBody,
    RegisterBody,
    account_view,
    authorization_view,
    certificate_view,
    request_view,
)
from core import acme
from core.auth import Principal
from core.errors import Invalid
from core.unit_of_work import UnitOfWork
from core.validation import decode_body
from models import DomainAuthorization, Grid, Service


async def _authz_view(
    uow: UnitOfWork, grid: Grid, row: DomainAuthorization
) -> DomainAuthorizationView:
    service = (
        await uow.session.get(Service, row.linked_service_id) if row.linked_service_id else None
    )
    deploy = await acme.challenge_deploy(uow.session, row)
    return authorization_view(grid, row, service, deploy)


async def _authorize(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal,
    grid: Grid,
    body: acme.AuthorizeBody,
) -> DomainAuthorization:
    runtime = get_runtime(request.app.state)
    port = await acme.setting_for_grid(uow.session, runtime.vault, grid.name, acme.HTTP01_PORT_KEY)
    if port is not None and not port.isdigit():
        raise Invalid({acme.HTTP01_PORT_KEY: f"config value {port!r} is not a port number"})
    http_port = int(port) if port is not None else runtime.settings.acme_http01_port
    row = await acme.authorize(uow.session, grid, body, http_port)
    uow.enqueue(acme.AUTHORIZE.job(row.id))
    audit(
        request,
        uow,
        principal,
        resource_type="domain_authorization",
        event_name="create",
        resource_id=row.id,
        resource_name=row.domain,
        grid=grid,
    )
    return row


class LegacyCertificateController(Controller):
    """``/v1/certificates/:grid``: register, authorize (deprecated), certificate (deprecated)."""

    path = "/v1/certificates/{grid:str}"
    tags = ["certificates"]

    @post("/register", summary="Register the grid with Let's Encrypt", status_code=201)
    async def create_registration(
        self,
        grid: str,
        request: Request[Any, Any, Any],
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Account:
        """Create or update the grid's ACME account; registration runs as a job."""
        grid_row = await load_grid(uow, principal, grid)
        body = decode_body(await request.body(), RegisterBody)
        runtime = get_runtime(state)
        # The grid's own directory (config key grid.<name>.acme.directory), else the global.
        directory = await acme.setting_for_grid(
            uow.session, runtime.vault, grid_row.name, acme.DIRECTORY_KEY
        )
        row = await acme.register(
            uow.session,
            runtime.vault,
            grid_row,
            body.email,
            directory or runtime.settings.acme_directory,
        )
        uow.enqueue(acme.REGISTER.job(row.id))
        audit(
            request,
            uow,
            principal,
            resource_type="acme_account",
            event_name="register",
            resource_id=row.id,
            grid=grid_row,
        )
        return account_view(row)

    @post("/authorize", summary="Authorize a domain with dns-01 (deprecated)", status_code=201)
    async def create_legacy_authorization(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> DomainAuthorizationView:
        """As ``POST /v1/grids/:grid/domain_authorizations`` with dns-01.

        The original answered the TXT record synchronously; here the CA is asked by a job, so
        the answer is the authorization to poll (``challenge_opts`` once ready).
        """
        grid_row = await load_grid(uow, principal, grid)
        body = decode_body(await request.body(), DomainBody)
        row = await _authorize(
            request, uow, principal, grid_row, acme.AuthorizeBody(domain=body.domain)
        )
        return await _authz_view(uow, grid_row, row)

    @post(
        "/certificate", summary="Request a certificate into secrets (deprecated)", status_code=201
    )
    async def create_legacy_certificate(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> list[str]:
        """Request a certificate; answers the names of the three secrets it will write."""
        grid_row = await load_grid(uow, principal, grid)
        body = decode_body(await request.body(), acme.CertificateBody)
        if not body.secret_name:
            raise Invalid({"secret_name": "is required"})
        row = await acme.request_certificate(uow.session, grid_row, body)
        uow.enqueue(acme.ISSUE.job(row.id))
        audit(
            request,
            uow,
            principal,
            resource_type="certificate",
            event_name="request",
            resource_id=row.id,
            resource_name=row.domains[0],
            grid=grid_row,
        )
        return acme.legacy_secret_names(body.secret_name)


class GridAuthorizationController(Controller):
    """``/v1/grids/:grid/domain_authorizations``."""

    path = "/v1/grids/{grid:str}/domain_authorizations"
    tags = ["certificates"]

    @get("/", summary="List domain authorizations")
    async def list_domain_authorizations(
        self, grid: str, uow: UnitOfWork, principal: Principal
    ) -> DomainAuthorizationList:
        """Every authorization of the grid."""
        grid_row = await load_grid(uow, principal, grid)
        rows = await acme.list_authorizations(uow.session, grid_row)
        return DomainAuthorizationList([await _authz_view(uow, grid_row, r) for r in rows])

    @post("/", summary="Authorize a domain", status_code=201)
    async def create_domain_authorization(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> DomainAuthorizationView:
        """Create (replace) the domain's authorization; the CA is asked by a job."""
        grid_row = await load_grid(uow, principal, grid)
        body = decode_body(await request.body(), acme.AuthorizeBody)
        row = await _authorize(request, uow, principal, grid_row, body)
        return await _authz_view(uow, grid_row, row)


class AuthorizationController(Controller):
    """``/v1/domain_authorizations/:grid/:domain``."""

    path = "/v1/domain_authorizations/{grid:str}/{domain:str}"
    tags = ["certificates"]

    @get("/", summary="Get a domain authorization")
    async def get_domain_authorization(
        self, grid: str, domain: str, uow: UnitOfWork, principal: Principal
    ) -> DomainAuthorizationView:
        """One authorization with its status and challenge."""
        grid_row = await load_grid(uow, principal, grid)
        row = await acme.get_authorization(uow.session, grid_row, domain)
        return await _authz_view(uow, grid_row, row)


class GridCertificateController(Controller):
    """``/v1/grids/:grid/certificates`` and certificate requests."""

    path = "/v1/grids/{grid:str}"
    tags = ["certificates"]

    @get("/certificates", summary="List certificates")
    async def list_certificates(
        self, grid: str, uow: UnitOfWork, principal: Principal
    ) -> CertificateList:
        """Every certificate of the grid with its renewal plan."""
        grid_row = await load_grid(uow, principal, grid)
        rows = await acme.list_certificates(uow.session, grid_row)
        return CertificateList([certificate_view(grid_row, r) for r in rows])

    @post("/certificates", summary="Request a certificate", status_code=201)
    async def create_certificate(
        self, grid: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> CertificateRequestView:
        """Request ``{domains}`` (first = subject); answers the request to poll."""
        grid_row = await load_grid(uow, principal, grid)
        body = decode_body(await request.body(), acme.CertificateBody)
        row = await acme.request_certificate(uow.session, grid_row, body)
        uow.enqueue(acme.ISSUE.job(row.id))
        audit(
            request,
            uow,
            principal,
            resource_type="certificate",
            event_name="request",
            resource_id=row.id,
            resource_name=row.domains[0],
            grid=grid_row,
        )
        return request_view(grid_row, row)

    @get("/certificate_requests/{request_id:str}", summary="Get a certificate request")
    async def get_certificate_request(
        self, grid: str, request_id: str, uow: UnitOfWork, principal: Principal
    ) -> CertificateRequestView:
        """A certificate request's state (created, ongoing, success, error) and reason."""
        grid_row = await load_grid(uow, principal, grid)
        return request_view(grid_row, await acme.get_request(uow.session, grid_row, request_id))


class CertificateController(Controller):
    """``/v1/certificates/:grid/:subject``: read, remove, renew."""

    path = "/v1/certificates/{grid:str}/{subject:str}"
    tags = ["certificates"]

    @get("/", summary="Get a certificate")
    async def get_certificate(
        self, grid: str, subject: str, uow: UnitOfWork, principal: Principal
    ) -> CertificateView:
        """One certificate."""
        grid_row = await load_grid(uow, principal, grid)
        return certificate_view(
            grid_row, await acme.get_certificate(uow.session, grid_row, subject)
        )

    @delete("/", summary="Remove a certificate", status_code=200)
    async def delete_certificate(
        self,
        grid: str,
        subject: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove a certificate no service uses."""
        grid_row = await load_grid(uow, principal, grid)
        row = await acme.get_certificate(uow.session, grid_row, subject)
        audit(
            request,
            uow,
            principal,
            resource_type="certificate",
            event_name="delete",
            resource_id=row.id,
            resource_name=row.subject,
            grid=grid_row,
        )
        await acme.delete_certificate(uow.session, grid_row, row)
        return {}

    @post("/renew", summary="Renew a certificate now", status_code=201)
    async def renew_certificate(
        self,
        grid: str,
        subject: str,
        request: Request[Any, Any, Any],
        uow: UnitOfWork,
        principal: Principal,
    ) -> CertificateRequestView:
        """Force an early renewal; answers the request to poll."""
        grid_row = await load_grid(uow, principal, grid)
        cert = await acme.get_certificate(uow.session, grid_row, subject)
        row = await acme.renew_request(uow.session, grid_row, cert)
        uow.enqueue(acme.ISSUE.job(row.id))
        audit(
            request,
            uow,
            principal,
            resource_type="certificate",
            event_name="renew",
            resource_id=cert.id,
            resource_name=cert.subject,
            grid=grid_row,
        )
        return request_view(grid_row, row)


ROUTES = [
    LegacyCertificateController,
    GridAuthorizationController,
    AuthorizationController,
    GridCertificateController,
    CertificateController,
]
