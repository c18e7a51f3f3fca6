"""Wire shapes of Let's Encrypt objects: accounts, domain authorizations, certificates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from api.schemas.audit_logs import timestamp
from core.acme import authorization_status, days_to_expiry, linked_service_ref
from models import (
    AcmeAccount,
    Certificate,
    CertificateRequest,
    DomainAuthorization,
    Grid,
    Service,
    ServiceDeploy,
)
from models.work import WorkState


def _ts(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None


class RegisterBody(msgspec.Struct, kw_only=True):
    """``POST /v1/certificates/:grid/register``."""

    email: str | None = None


class DomainBody(msgspec.Struct, kw_only=True):
    """The deprecated ``POST /v1/certificates/:grid/authorize``."""

    domain: str


class Account(msgspec.Struct):
    """A grid's ACME account; ``state`` is the registration job's."""

    email: str
    directory: str
    state: str
    reason: str | None


class DomainAuthorizationView(msgspec.Struct):
    """The spec's domain authorization object (plus ``reason`` on errors)."""

    id: str
    domain: str
    status: str
    challenge: dict[str, Any] | None
    challenge_opts: dict[str, Any] | None
    authorization_type: str
    linked_service: dict[str, Any] | None
    reason: str | None


class DomainAuthorizationList(msgspec.Struct):
    """``{"domain_authorizations": [...]}``."""

    domain_authorizations: list[DomainAuthorizationView]


class CertificateView(msgspec.Struct):
    """A certificate with its renewal plan (no key material)."""

    id: str
    subject: str
    alt_names: list[str]
    valid_until: str
    days_to_expiry: float
    next_renewal_at: str | None
    last_renewed_at: str | None
    last_error: str | None
    attempts: int
    created_at: str
    updated_at: str


class CertificateList(msgspec.Struct):
    """``{"certificates": [...]}``."""

    certificates: list[CertificateView]


class CertificateRequestView(msgspec.Struct):
    """A certificate request (the job): poll it until ``state`` is success or error."""

    id: str
    subject: str
    domains: list[str]
    state: str
    reason: str | None
    certificate: str | None
    created_at: str
    finished_at: str | None


def account_view(row: AcmeAccount) -> Account:
    """Render an account."""
    return Account(email=row.email, directory=row.directory, state=row.state, reason=row.reason)


def authorization_view(
    grid: Grid,
    row: DomainAuthorization,
    service: Service | None,
    deploy: ServiceDeploy | None = None,
) -> DomainAuthorizationView:
    """Render an authorization (``deploy``: its http-01 challenge deploy, if any)."""
    return DomainAuthorizationView(
        id=f"{grid.name}/{row.domain}",
        domain=row.domain,
        status=authorization_status(row, deploy=deploy),
        challenge=row.challenge,
        challenge_opts=row.challenge_opts,
        authorization_type=row.authorization_type,
        linked_service=linked_service_ref(grid, service),
        reason=row.reason if row.state == WorkState.ERROR.value else None,
    )


def certificate_view(grid: Grid, row: Certificate) -> CertificateView:
    """Render a certificate."""
    return CertificateView(
        id=f"{grid.name}/{row.subject}",
        subject=row.subject,
        alt_names=list(row.alt_names),
        valid_until=timestamp(row.valid_until),
        days_to_expiry=round(days_to_expiry(row), 3),
        next_renewal_at=_ts(row.next_renewal_at),
        last_renewed_at=_ts(row.last_renewed_at),
        last_error=row.last_error,
        attempts=row.attempts,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def request_view(grid: Grid, row: CertificateRequest) -> CertificateRequestView:
    """Render a certificate request."""
    return CertificateRequestView(
        id=row.id,
        subject=row.domains[0],
        domains=list(row.domains),
        state=row.state,
        reason=row.reason,
        certificate=f"{grid.name}/{row.domains[0]}" if row.certificate_id else None,
        created_at=timestamp(row.created_at),
        finished_at=_ts(row.finished_at),
    )
