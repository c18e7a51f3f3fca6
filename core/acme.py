"""Let's Encrypt on the API side: validate, write the work rows, render; ACME runs in workers.

Registration, authorization and issuance each write a row in ``created`` and enqueue its job
(ARCHITECTURE §5); :mod:`core.acme_work` performs them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import config_store, work
from core.acme_client import new_account_key
from core.errors import Invalid, NotFound
from core.vault import Vault
from core.vault_columns import acme_account_context
from models import (
    AcmeAccount,
    Certificate,
    CertificateRequest,
    DomainAuthorization,
    Grid,
    Service,
    ServiceDeploy,
)
from models.base import utcnow
from models.services import NULL_STACK
from models.work import WorkState

QUEUE = "certs"
REGISTER = work.register(
    work.WorkKind(name="acme_register", model=AcmeAccount, actor="certs.register", queue=QUEUE)
)
AUTHORIZE = work.register(
    work.WorkKind(
        name="acme_authorize", model=DomainAuthorization, actor="certs.authorize", queue=QUEUE
    )
)
# The issue actor's time limit. Worst case of a request: its ACME calls (30 s timeout each,
# normally well under a second), ONE wait for all its http-01 challenge deploys at once
# (core.acme_work.CHALLENGE_DEPLOY_WAIT, 240 s), then per domain a validation of at most 30 s
# (VALIDATION_TIMEOUT), and finalization (at most 60 s): 240 + 60 + 25 * 30 = 1050 s, so a
# request of up to 25 slowly validated domains fits, with room left for the other calls.
ISSUE_TIME_LIMIT_SECONDS = 20 * 60
ISSUE = work.register(
    work.WorkKind(
        name="acme_issue",
        model=CertificateRequest,
        actor="certs.issue",
        queue=QUEUE,
        # Longer than the time limit: the row stays claimed while its worker may still run.
        lease_seconds=ISSUE_TIME_LIMIT_SECONDS + 60,
    )
)

# Global config keys (``/v1/config``) that override KONTENA_ACME_DIRECTORY / _CA_BUNDLE /
# _DNS_RESOLVERS / _HTTP01_PORT; ``grid.<grid name>.<key>`` overrides them for one grid.
DIRECTORY_KEY = "acme.directory"
CA_BUNDLE_KEY = "acme.ca_bundle"
DNS_RESOLVERS_KEY = "acme.dns_resolvers"
HTTP01_PORT_KEY = "acme.http01_port"
AUTH_TYPES = ("dns-01", "http-01")
CERT_TYPES = ("cert", "chain", "fullchain")
NO_REGISTRATION = {"le_registration": "Let's Encrypt registration missing"}
TLS_SNI_GONE = (
    "tls-sni-01 is no longer supported: Let's Encrypt switched it off in March 2019; "
    "use http-01 (with linked_service) or dns-01 instead"
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


class AuthorizeBody(msgspec.Struct, kw_only=True):
    """``POST /v1/grids/:grid/domain_authorizations``."""

    domain: str
    authorization_type: str = "dns-01"
    linked_service: str | None = None


class CertificateBody(msgspec.Struct, kw_only=True):
    """Certificate requests: the legacy and the current endpoint."""

    domains: list[str]
    secret_name: str | None = None
    cert_type: str = "fullchain"


def grid_key(grid_name: str, key: str) -> str:
    """The config key that overrides ``key`` for one grid: ``grid.<grid name>.<key>``."""
    return f"grid.{grid_name}.{key}"


async def setting_for_grid(
    session: AsyncSession, vault: Vault, grid_name: str | None, key: str
) -> str | None:
    """The grid's config value of ``key``, else the global one, else None (use the env)."""
    keys = ([grid_key(grid_name, key)] if grid_name else []) + [key]
    values = await config_store.get_values(session, vault, keys)
    for candidate in keys:
        value = values.get(candidate)
        if value is not None and value != "":
            return str(value)
    return None


async def find_account(session: AsyncSession, grid: Grid) -> AcmeAccount | None:
    """The grid's ACME account row, if registered (or being registered)."""
    stmt = select(AcmeAccount).where(AcmeAccount.grid_id == grid.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def register(
    session: AsyncSession, vault: Vault, grid: Grid, email: str | None, directory: str
) -> AcmeAccount:
    """Create or update the grid's account; the registration job runs after the commit."""
    if not email or not EMAIL.match(email):
        raise Invalid({"email": "is invalid"})
    account = await find_account(session, grid)
    if account is None:
        account = AcmeAccount(
            grid_id=grid.id,
            key_encrypted=vault.encrypt(new_account_key(), context=acme_account_context(grid.id)),
            email=email,
            directory=directory,
        )
        session.add(account)
    else:
        account.email = email
        # A re-registration follows a changed directory (the grid's or the global setting).
        account.directory = directory
        account.state = WorkState.CREATED.value
        account.reason = None
        account.finished_at = None
        account.attempts = 0
        account.lease_until = None
    await session.flush()
    return account


async def _require_account(session: AsyncSession, grid: Grid) -> AcmeAccount:
    account = await find_account(session, grid)
    if account is None or account.state == WorkState.ERROR.value:
        raise Invalid(dict(NO_REGISTRATION))
    return account


async def find_service(session: AsyncSession, grid: Grid, path: str) -> Service | None:
    """The service named ``stack/service`` (or ``service``: stack-less) in ``grid``."""
    stack, _, name = path.rpartition("/")
    stmt = select(Service).where(
        Service.grid_id == grid.id, Service.stack == (stack or NULL_STACK), Service.name == name
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def publishes_port(service: Service, port: int) -> bool:
    """True when the service publishes node port ``port`` (or runs in the host network)."""
    spec = service.spec or {}
    if spec.get("net") == "host":
        return True
    return any(int(p.get("node_port", 0)) == port for p in spec.get("ports") or [])


async def authorize(
    session: AsyncSession, grid: Grid, body: AuthorizeBody, http_port: int = 80
) -> DomainAuthorization:
    """Validate and (re)create the domain's authorization; the job asks the CA.

    ``http_port`` is the node port the CA connects to for http-01 (80, except for a test CA).
    """
    await _require_account(session, grid)
    kind = body.authorization_type
    domain = body.domain.strip().lower()
    if kind == "tls-sni-01":
        raise Invalid({"authorization_type": TLS_SNI_GONE})
    if kind not in AUTH_TYPES:
        raise Invalid({"authorization_type": "must be one of dns-01, http-01"})
    if not DOMAIN.match(domain):
        raise Invalid({"domain": "is invalid"})
    service: Service | None = None
    if kind == "dns-01" and body.linked_service:
        raise Invalid({"linked_service": "Service link cannot be given for dns-01 authorization"})
    if kind == "http-01":
        if not body.linked_service:
            raise Invalid(
                {
                    "linked_service": "Service link needs to be given for the http-01 "
                    "authorization type"
                }
            )
        service = await find_service(session, grid, body.linked_service)
        if service is None:
            raise Invalid({"linked_service": f"Linked service not found: {body.linked_service}"})
        if not publishes_port(service, http_port):
            raise Invalid({"linked_service": f"Linked service does not have port {http_port} open"})
    # As the original: a new authorization replaces the domain's previous one.
    await session.execute(
        delete(DomainAuthorization).where(
            DomainAuthorization.grid_id == grid.id, DomainAuthorization.domain == domain
        )
    )
    row = DomainAuthorization(
        grid_id=grid.id,
        domain=domain,
        authorization_type=kind,
        linked_service_id=service.id if service else None,
    )
    session.add(row)
    await session.flush()
    return row


async def list_authorizations(session: AsyncSession, grid: Grid) -> Sequence[DomainAuthorization]:
    """The grid's authorizations by domain."""
    stmt = (
        select(DomainAuthorization)
        .where(DomainAuthorization.grid_id == grid.id)
        .order_by(DomainAuthorization.domain)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_authorization(session: AsyncSession, grid: Grid, domain: str) -> DomainAuthorization:
    """One authorization; 404 with the original's (sic) message."""
    stmt = select(DomainAuthorization).where(
        DomainAuthorization.grid_id == grid.id, DomainAuthorization.domain == domain.lower()
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound("Domain authorization not found)")
    return row


async def challenge_deploy(session: AsyncSession, row: DomainAuthorization) -> ServiceDeploy | None:
    """The forced deploy delivering the authorization's http-01 challenge, if any (and kept)."""
    return await session.get(ServiceDeploy, row.deploy_id) if row.deploy_id else None


def authorization_status(
    row: DomainAuthorization, now: datetime | None = None, deploy: ServiceDeploy | None = None
) -> str:
    """Kontena's rendered status of an authorization.

    While the challenge deploy of an http-01 authorization runs it is ``deploying``; a failed
    one shows ``deploy_error`` (as the original's status did); then Kontena's state.
    """
    if row.state == WorkState.ERROR.value:
        return "error"
    if row.state != WorkState.SUCCESS.value:
        return "created"
    if deploy is not None and row.authz_state in ("created", "requested"):
        if deploy.state in (WorkState.CREATED.value, WorkState.ONGOING.value):
            return "deploying"
        if deploy.state == WorkState.ERROR.value:
            return "deploy_error"
    now = now or utcnow()
    if row.authz_state != "validated" and row.expires_at is not None and row.expires_at < now:
        return "expired"
    return row.authz_state


async def request_certificate(
    session: AsyncSession, grid: Grid, body: CertificateBody
) -> CertificateRequest:
    """Validate a certificate request and write it; the job verifies and issues."""
    await _require_account(session, grid)
    domains = [d.strip().lower() for d in body.domains if d.strip()]
    if not domains:
        raise Invalid({"domains": "is required"})
    if body.cert_type not in CERT_TYPES:
        raise Invalid({"cert_type": "must be one of cert, chain, fullchain"})
    if body.secret_name is not None and not re.match(r"^[A-Za-z0-9_]+$", body.secret_name):
        raise Invalid({"secret_name": "is invalid"})
    known = {row.domain for row in await list_authorizations(session, grid)}
    for domain in domains:
        if domain not in known:
            raise Invalid({"authorization": f"Domain authorization not found for domain {domain}"})
    row = CertificateRequest(
        grid_id=grid.id,
        domains=list(dict.fromkeys(domains)),
        secret_name=body.secret_name,
        cert_type=body.cert_type,
    )
    session.add(row)
    await session.flush()
    return row


def legacy_secret_names(secret_name: str) -> list[str]:
    """The three vault secrets the legacy endpoint writes."""
    return [f"{secret_name}_{part}" for part in ("PRIVATE_KEY", "CERTIFICATE", "BUNDLE")]


async def list_certificates(session: AsyncSession, grid: Grid) -> Sequence[Certificate]:
    """The grid's certificates by subject."""
    stmt = select(Certificate).where(Certificate.grid_id == grid.id).order_by(Certificate.subject)
    return (await session.execute(stmt)).scalars().all()


async def get_certificate(session: AsyncSession, grid: Grid, subject: str) -> Certificate:
    """One certificate by subject; 404 ``Not found``."""
    stmt = select(Certificate).where(
        Certificate.grid_id == grid.id, Certificate.subject == subject.lower()
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound()
    return row


async def get_request(session: AsyncSession, grid: Grid, request_id: str) -> CertificateRequest:
    """One certificate request of ``grid``; 404 when unknown."""
    row = await session.get(CertificateRequest, request_id)
    if row is None or row.grid_id != grid.id:
        raise NotFound()
    return row


async def renew_request(session: AsyncSession, grid: Grid, cert: Certificate) -> CertificateRequest:
    """A request to renew ``cert`` now (an admin's forced early retry)."""
    await _require_account(session, grid)
    row = CertificateRequest(
        grid_id=grid.id,
        domains=[cert.subject, *cert.alt_names],
        secret_name=cert.secret_name,
        cert_type=cert.cert_type,
        certificate_id=cert.id,
    )
    session.add(row)
    await session.flush()
    return row


async def delete_certificate(session: AsyncSession, grid: Grid, cert: Certificate) -> None:
    """Remove a certificate no service references; otherwise 422 naming them."""
    services = (
        (await session.execute(select(Service).where(Service.grid_id == grid.id))).scalars().all()
    )
    users = [
        f"{grid.name}/{s.stack}/{s.name}"
        for s in services
        if any(c.get("subject") == cert.subject for c in (s.spec or {}).get("certificates") or [])
    ]
    if users:
        raise Invalid({"certificate": f"Certificate still in use in services: {','.join(users)}"})
    await session.delete(cert)
    await session.flush()


def days_to_expiry(cert: Certificate, now: datetime | None = None) -> float:
    """Days until ``valid_until`` (negative once expired); for metrics."""
    return (cert.valid_until - (now or utcnow())).total_seconds() / 86400


def linked_service_ref(grid: Grid, service: Service | None) -> dict[str, Any] | None:
    """``{"id": "grid/stack/service"}`` as the spec renders ``linked_service``."""
    if service is None:
        return None
    return {"id": f"{grid.name}/{service.stack}/{service.name}"}
