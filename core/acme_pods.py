"""What Let's Encrypt adds to a service's pods: http-01 challenges and certificate bundles.

Reference §6.1: while an http-01 authorization is deliverable (linked service, challenge
obtained, not yet validated, not expired) its linked service gets env
``ACME_CHALLENGE_<token>=<key authorization>``; a service's ``certificates: [{subject, name}]``
get env ``name`` holding certificate + chain + private key. Both are built when pods are listed,
like secrets, and never stored in plain text.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.vault import Vault
from core.vault_columns import certificate_context
from models import Certificate, DomainAuthorization, Grid, Service
from models.base import utcnow
from models.work import WorkState

CHALLENGE_ENV_PREFIX = "ACME_CHALLENGE_"
# Authorization states in which the CA may still come for the challenge.
DELIVERABLE_STATES = ("created", "requested")


def challenge_env_name(token: str) -> str:
    """``ACME_CHALLENGE_<token>``: tokens are base64url, valid in env names as they are."""
    return f"{CHALLENGE_ENV_PREFIX}{token}"


async def challenge_env(session: AsyncSession, service: Service) -> list[str]:
    """``ACME_CHALLENGE_<token>=<key authorization>`` for each deliverable http-01 challenge."""
    stmt = (
        select(DomainAuthorization)
        .where(
            DomainAuthorization.linked_service_id == service.id,
            DomainAuthorization.authorization_type == "http-01",
            # Ongoing too: the authorize job sends the challenge's deploy before it marks its
            # row success, and pods listed in between must already carry the challenge (an
            # ongoing row without one yet is skipped below).
            DomainAuthorization.state.in_((WorkState.SUCCESS.value, WorkState.ONGOING.value)),
            DomainAuthorization.authz_state.in_(DELIVERABLE_STATES),
        )
        .order_by(DomainAuthorization.domain)
    )
    now = utcnow()
    env: list[str] = []
    for authz in (await session.execute(stmt)).scalars():
        opts = authz.challenge_opts or {}
        if authz.expires_at is not None and authz.expires_at < now:
            continue
        if opts.get("token") and opts.get("content"):
            env.append(f"{challenge_env_name(str(opts['token']))}={opts['content']}")
    return env


async def certificate_env(
    session: AsyncSession, vault: Vault, grid: Grid, service: Service
) -> list[str]:
    """``<name>=<cert + chain + key>`` for each of the service's ``certificates``.

    A subject the grid has no certificate for is skipped: the original deployed without it.
    """
    refs: Sequence[dict[str, str]] = (service.spec or {}).get("certificates") or []
    if not refs:
        return []
    subjects = [str(ref.get("subject", "")).lower() for ref in refs]
    stmt = select(Certificate).where(
        Certificate.grid_id == grid.id, Certificate.subject.in_(subjects)
    )
    found = {cert.subject: cert for cert in (await session.execute(stmt)).scalars()}
    values: dict[str, list[str]] = {}
    for ref, subject in zip(refs, subjects, strict=True):
        cert = found.get(subject)
        if cert is None:
            continue
        key = vault.decrypt(cert.key_encrypted, context=certificate_context(grid.id, subject))
        name = str(ref.get("name") or "SSL_CERTS")
        values.setdefault(name, []).append(cert.cert_pem + cert.chain_pem + key)
    return [f"{name}={''.join(parts)}" for name, parts in values.items()]


async def acme_pod_env(
    session: AsyncSession, vault: Vault, grid: Grid, service: Service
) -> list[str]:
    """Certificates first, then challenges (the first SSL_CERTS entry is special to the LB)."""
    return await certificate_env(session, vault, grid, service) + await challenge_env(
        session, service
    )
