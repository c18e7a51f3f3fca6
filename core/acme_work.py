"""The ACME work itself (run by workers): register, authorize, issue, renew.

Every blocking ACME or DNS call goes through :func:`_network`, which commits first: no
transaction (row lock, SQLite write lock) stays open while the CA answers or while a challenge
deploy is awaited. ACME failures end the work row in ``error`` with a reason (no Dramatiq retry:
the CA's answer would not change); renewals record ``last_error`` and back off 1 min, 10 min,
100 min, then daily, or as Retry-After says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from cryptography import x509
from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import acme_dns, secrets, service_actions
from core.acme import (
    AUTHORIZE,
    CA_BUNDLE_KEY,
    DNS_RESOLVERS_KEY,
    ISSUE,
    REGISTER,
    legacy_secret_names,
    setting_for_grid,
)
from core.acme_client import AcmeClient, AcmeError, RateLimited, new_private_key_pem
from core.config import Settings
from core.events import Severity, record_event
from core.jobs import Job, JobSender
from core.services import service_path
from core.unit_of_work import UnitOfWork
from core.vault import Vault
from core.vault_columns import acme_account_context, certificate_context
from core.work import WorkKind, claim, finish
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
from models.db import Database
from models.work import WorkState

VALIDATION_TIMEOUT = 30.0
BACKOFF = (timedelta(minutes=1), timedelta(minutes=10), timedelta(minutes=100))
DAILY = timedelta(days=1)
ARI_MAX_CHECK_INTERVAL = timedelta(days=1)
RENEW_BATCH = 50
# A renewal claims its certificate by pushing its due times this far ahead: longer than the
# renewal tick's time limit (30 min, workers.acme), so a second tick cannot renew it while
# the first still runs; a worker that died leaves it to the tick after the lease.
RENEW_LEASE = timedelta(minutes=31)
# A certificate request waits this long for the forced deploys delivering its http-01
# challenges, all at once (the original's renewal waited 300 s; see workers.acme for the
# time limit this fits in).
CHALLENGE_DEPLOY_WAIT = 240.0
UOW_KEY = "acme_uow"
T = TypeVar("T")


class _NoSender:
    """Without a broker the deploy rows stay ``created``; the recovery tick sends them."""

    def send(self, job: Job) -> None:
        raise RuntimeError(f"no job sender: {job.actor} is left to the recovery tick")


@dataclass
class AcmeEnv:
    """What the ACME steps need: database, vault, settings, a job sender and a clock."""

    db: Database
    vault: Vault
    settings: Settings
    clock: Any = field(default=utcnow)
    # Sends the deploys ACME asks for (http-01 challenges, certificate consumers).
    sender: JobSender | None = None
    challenge_deploy_wait: float = CHALLENGE_DEPLOY_WAIT
    poll_interval: float = 0.25


def _unit_of_work(env: AcmeEnv, session: AsyncSession) -> UnitOfWork:
    """The session's unit of work: deploy jobs go out only after their rows are committed."""
    uow = session.info.get(UOW_KEY)
    if uow is None:
        uow = session.info[UOW_KEY] = UnitOfWork(session, env.sender or _NoSender())
    assert isinstance(uow, UnitOfWork)
    return uow


async def _commit(env: AcmeEnv, session: AsyncSession) -> None:
    """Commit, then send the jobs buffered so far."""
    await _unit_of_work(env, session).commit()


async def _network(env: AcmeEnv, session: AsyncSession, call: Callable[..., T], *args: Any) -> T:
    """Commit (ending the transaction), then run a blocking ACME/DNS ``call`` in a thread."""
    await _commit(env, session)
    return await asyncio.to_thread(call, *args)


async def _perform(env: AcmeEnv, kind: WorkKind, row_id: str, step: Any) -> bool:
    async with env.db.session() as session:
        row = await claim(session, kind.model, row_id, kind.lease_seconds)
        await session.commit()
        if row is None:
            return False
        try:
            await step(env, session, row)
        except (AcmeError, acme_dns.DnsCheckError) as error:
            finish(session, row, WorkState.ERROR, str(error))
        if not WorkState(row.state).terminal:
            finish(session, row, WorkState.SUCCESS)
        await _commit(env, session)
        return True


async def _setting(
    env: AcmeEnv, session: AsyncSession, grid_id: str, key: str, default: str
) -> str:
    # The grid's key wins over the global one (both set through /v1/config), then the env.
    grid = await session.get(Grid, grid_id)
    value = await setting_for_grid(session, env.vault, grid.name if grid else None, key)
    return value or default


async def _client(env: AcmeEnv, session: AsyncSession, account: AcmeAccount) -> AcmeClient:
    """A client for the grid's account, registering it first when it is not yet."""
    bundle = await _setting(
        env, session, account.grid_id, CA_BUNDLE_KEY, env.settings.acme_ca_bundle
    )
    key = env.vault.decrypt(account.key_encrypted, context=acme_account_context(account.grid_id))
    client = await _network(
        env, session, AcmeClient, account.directory, key, bundle, account.account_url
    )
    if not account.account_url:
        account.account_url = await _network(env, session, client.register, account.email)
    return client


async def _account(session: AsyncSession, grid_id: str) -> AcmeAccount:
    stmt = select(AcmeAccount).where(AcmeAccount.grid_id == grid_id)
    account = (await session.execute(stmt)).scalar_one_or_none()
    if account is None:
        raise AcmeError("Let's Encrypt registration missing")
    return account


async def _register_step(env: AcmeEnv, session: AsyncSession, account: AcmeAccount) -> None:
    account.account_url = None  # register (or find) again: the email may have changed
    await _client(env, session, account)
    record_event(session, account.grid_id, "acme:register", f"ACME account for {account.email}")


async def _authorize_step(env: AcmeEnv, session: AsyncSession, row: DomainAuthorization) -> None:
    client = await _client(env, session, await _account(session, row.grid_id))
    if row.authorization_type == "http-01":
        await _http_challenge(env, session, client, row)
        return
    chall = await _network(env, session, client.dns_challenge, row.domain)
    row.authz_url = chall.authz_url
    row.expires_at = chall.expires_at
    row.authz_state = "created"
    row.challenge = {"type": "dns-01", "token": chall.token, "uri": chall.challenge_url}
    row.challenge_opts = {
        "record_name": chall.record_name,
        "record_type": "TXT",
        "record_content": chall.record_content,
    }


async def _linked_service(
    session: AsyncSession, authz: DomainAuthorization
) -> tuple[Grid, Service]:
    service = (
        await session.get(Service, authz.linked_service_id) if authz.linked_service_id else None
    )
    grid = await session.get(Grid, authz.grid_id)
    if service is None or grid is None:
        # Kontena #2881: say so instead of failing obscurely (or renewing without it).
        raise AcmeError(f"The linked service of domain {authz.domain} was removed")
    return grid, service


async def _http_challenge(
    env: AcmeEnv, session: AsyncSession, client: AcmeClient, authz: DomainAuthorization
) -> None:
    """Get an http-01 challenge and force-deploy the linked service to deliver it.

    The linked service's pods carry ``ACME_CHALLENGE_<token>`` (core.acme_pods); the deploy
    is committed and its job sent here, so its progress shows in the authorization's status.
    """
    grid, service = await _linked_service(session, authz)
    chall = await _network(env, session, client.http_challenge, authz.domain)
    authz.authz_url = chall.authz_url
    authz.expires_at = chall.expires_at
    authz.authz_state = "created"
    authz.challenge = {"type": "http-01", "token": chall.token, "uri": chall.challenge_url}
    authz.challenge_opts = {"token": chall.token, "content": chall.key_authorization}
    deploy, _ = await service_actions.request_system_deploy(
        _unit_of_work(env, session),
        grid,
        service,
        force=True,
        reason=f"http-01 challenge for {authz.domain}",
    )
    authz.deploy_id = deploy.id
    await _commit(env, session)


async def _wait_for_deploy(env: AcmeEnv, authz: DomainAuthorization) -> None:
    """Wait (no transaction open) until the challenge deploy finished; fail on its error."""
    if authz.deploy_id is None:
        return
    deadline = time.monotonic() + env.challenge_deploy_wait
    while True:
        async with env.db.session() as poll:
            found = (
                await poll.execute(
                    select(ServiceDeploy.state, ServiceDeploy.reason).where(
                        ServiceDeploy.id == authz.deploy_id
                    )
                )
            ).first()
        if found is None or found.state == WorkState.SUCCESS.value:
            return
        if found.state == WorkState.ERROR.value:
            raise AcmeError(
                f"Deploy of the http-01 challenge for {authz.domain} failed: {found.reason}"
            )
        if time.monotonic() > deadline:
            raise AcmeError(
                f"Deploy of the http-01 challenge for {authz.domain} did not finish within "
                f"{env.challenge_deploy_wait:.0f} s"
            )
        await asyncio.sleep(env.poll_interval)


async def _wait_for_deploys(env: AcmeEnv, authzs: Sequence[DomainAuthorization]) -> None:
    """Wait for every challenge deploy at once, so the wait is bounded by one deploy's.

    Domains sharing a deploy (one linked service) wait for it once; the first failure (in
    domain order among those finished) is raised and the other waits are cancelled.
    """
    by_deploy: dict[str, DomainAuthorization] = {}
    for authz in authzs:
        if authz.deploy_id is not None:
            by_deploy.setdefault(authz.deploy_id, authz)
    tasks = [asyncio.create_task(_wait_for_deploy(env, a)) for a in by_deploy.values()]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # Also when this wait is cancelled (the actor's time limit): no poller outlives it.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def _prepare_http(
    env: AcmeEnv, session: AsyncSession, client: AcmeClient, authz: DomainAuthorization
) -> bool:
    """Deliver the http-01 challenge again if the CA forgot the validation.

    Returns True when the domain still has to be validated (after its deploy finished).
    """
    await _linked_service(session, authz)
    if authz.authz_url is None:
        raise AcmeError(f"Domain authorization for {authz.domain} has no challenge yet")
    if authz.authz_state in ("validated", "error"):
        if await _network(env, session, client.authz_status, authz.authz_url) == "valid":
            authz.authz_state = "validated"
            return False
        # The CA's authorization expired or failed: challenge again through the linked
        # service, as the original's renewal job re-authorized each domain.
        await _http_challenge(env, session, client, authz)
    return True


async def _answer(
    env: AcmeEnv, session: AsyncSession, client: AcmeClient, authz: DomainAuthorization
) -> None:
    """Ask the CA to validate the domain's challenge and wait for the outcome."""
    assert authz.authz_url is not None
    authz.authz_state = "requested"
    await _commit(env, session)
    deadline = time.monotonic() + VALIDATION_TIMEOUT
    status, detail = await _network(
        env, session, client.validate, authz.authz_url, deadline, authz.authorization_type
    )
    if status == "valid":
        authz.authz_state = "validated"
        return
    authz.authz_state = "error"
    await _commit(env, session)
    raise AcmeError(f"Challenge verification failed for {authz.domain}: {detail or status}")


async def _verify_domain(
    env: AcmeEnv, session: AsyncSession, client: AcmeClient, authz: DomainAuthorization
) -> None:
    """The master's own TXT check, then the CA's validation of the domain."""
    if authz.authz_url is None:
        raise AcmeError(f"Domain authorization for {authz.domain} has no challenge yet")
    # As the original, on every request (renewals too): the record must still be there.
    opts = authz.challenge_opts or {}
    resolvers = await _setting(
        env, session, authz.grid_id, DNS_RESOLVERS_KEY, env.settings.acme_dns_resolvers
    )
    values = await _network(
        env, session, acme_dns.txt_values, str(opts.get("record_name")), resolvers
    )
    if opts.get("record_content") not in values:
        raise AcmeError(f"Expected DNS record not present for domain {authz.domain}")
    if authz.authz_state == "validated":
        return
    await _answer(env, session, client, authz)


async def _issue(env: AcmeEnv, session: AsyncSession, req: CertificateRequest) -> Certificate:
    """Verify every domain and issue; stores the certificate and the legacy secrets."""
    client = await _client(env, session, await _account(session, req.grid_id))
    stmt = select(DomainAuthorization).where(
        DomainAuthorization.grid_id == req.grid_id, DomainAuthorization.domain.in_(req.domains)
    )
    authzs = {a.domain: a for a in (await session.execute(stmt)).scalars()}
    http_pending: list[DomainAuthorization] = []
    for domain in req.domains:
        authz = authzs.get(domain)
        if authz is None:
            raise AcmeError(f"Domain authorization not found for domain {domain}")
        if authz.authorization_type == "http-01":
            if await _prepare_http(env, session, client, authz):
                http_pending.append(authz)
        elif authz.authorization_type == "dns-01":
            await _verify_domain(env, session, client, authz)
    if http_pending:
        # All challenge deploys are awaited together (no transaction open meanwhile), then
        # each domain validated: one deploy wait per request, not one per domain.
        await _commit(env, session)
        await _wait_for_deploys(env, http_pending)
        for authz in http_pending:
            await _answer(env, session, client, authz)
    key_pem = new_private_key_pem()
    fullchain = await _network(env, session, client.issue, list(req.domains), key_pem)
    return await _store(env, session, req, key_pem, fullchain)


def _split_chain(fullchain: str) -> tuple[str, str]:
    marker = "-----END CERTIFICATE-----"
    cert, _, rest = fullchain.partition(marker)
    return cert + marker + "\n", rest.lstrip()


def renewal_at(cert_pem: str) -> datetime:
    """The backstop renewal time: 1/3 of the lifetime left (1/2 under 10 days)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    lifetime = end - start
    return end - (lifetime / 2 if lifetime < timedelta(days=10) else lifetime / 3)


async def _store(
    env: AcmeEnv, session: AsyncSession, req: CertificateRequest, key_pem: str, fullchain: str
) -> Certificate:
    cert_pem, chain_pem = _split_chain(fullchain)
    parsed = x509.load_pem_x509_certificate(cert_pem.encode())
    subject, alt_names = req.domains[0], list(req.domains[1:])
    stmt = select(Certificate).where(
        Certificate.grid_id == req.grid_id, Certificate.subject == subject
    )
    cert = (await session.execute(stmt)).scalar_one_or_none()
    now = env.clock()
    if cert is None:
        cert = Certificate(grid_id=req.grid_id, subject=subject)
        session.add(cert)
    else:
        cert.last_renewed_at = now
    cert.alt_names = alt_names
    cert.valid_until = parsed.not_valid_after_utc
    cert.cert_pem, cert.chain_pem = cert_pem, chain_pem
    cert.key_encrypted = env.vault.encrypt(
        key_pem, context=certificate_context(req.grid_id, subject)
    )
    cert.secret_name = req.secret_name or cert.secret_name
    cert.cert_type = req.cert_type
    cert.next_renewal_at = renewal_at(cert_pem)
    # Ask the CA's ARI (when it offers one) at the next tick; it says how often after that.
    cert.next_check_at = now
    cert.last_error, cert.attempts = None, 0
    await session.flush()
    req.certificate_id = cert.id
    if cert.secret_name:
        await _write_secrets(env, session, cert, key_pem)
    return cert


async def _write_secrets(
    env: AcmeEnv, session: AsyncSession, cert: Certificate, key_pem: str
) -> None:
    grid = await session.get(Grid, cert.grid_id)
    assert grid is not None and cert.secret_name
    pem = {
        "cert": cert.cert_pem,
        "chain": cert.chain_pem,
        "fullchain": cert.cert_pem + cert.chain_pem,
    }[cert.cert_type]
    key_name, cert_name, bundle_name = legacy_secret_names(cert.secret_name)
    for name, value in ((key_name, key_pem), (cert_name, pem), (bundle_name, pem + key_pem)):
        existing = await secrets.find_secret(session, grid, name)
        if existing is None:
            await secrets.create_secret(
                session, env.vault, grid, secrets.SecretCreate(name=name, value=value)
            )
        else:
            await secrets.update_secret(
                session, env.vault, grid, existing, secrets.SecretUpdate(value=value)
            )


def _consumes(service: Service, cert: Certificate) -> tuple[bool, bool]:
    """(uses the certificate itself, uses one of its legacy secrets)."""
    spec = service.spec or {}
    by_cert = any(
        str(ref.get("subject", "")).lower() == cert.subject
        for ref in spec.get("certificates") or []
    )
    names = set(legacy_secret_names(cert.secret_name)) if cert.secret_name else set()
    by_secret = any(ref.get("secret") in names for ref in spec.get("secrets") or [])
    return by_cert, by_secret


async def redeploy_consumers(
    env: AcmeEnv, session: AsyncSession, cert: Certificate, verb: str
) -> list[str]:
    """Deploy every running service using ``cert`` or its secrets; returns their paths.

    A service with a deploy not yet started gets no second one (that deploy builds its pods
    from the new values); the jobs go out when the session's unit of work commits.
    """
    grid = await session.get(Grid, cert.grid_id)
    assert grid is not None
    stmt = (
        select(Service)
        .where(Service.grid_id == cert.grid_id, Service.state == "running")
        .order_by(Service.stack, Service.name)
    )
    redeployed: list[str] = []
    for service in (await session.execute(stmt)).scalars():
        by_cert, by_secret = _consumes(service, cert)
        if not (by_cert or by_secret):
            continue
        path = service_path(grid.name, service)
        # A changed secret already bumped the revision (core.services.secret_changed); the
        # certificate's env needs its own bump so the containers are recreated.
        _, created = await service_actions.request_system_deploy(
            _unit_of_work(env, session),
            grid,
            service,
            force=by_cert,
            reason=f"certificate {cert.subject} {verb}",
        )
        note = "" if created else " (joins the deploy already pending)"
        record_event(
            session,
            cert.grid_id,
            "acme:redeploy",
            f"certificate {cert.subject} {verb}: redeploying service {path}{note}",
            stack=service.stack,
            service=service.name,
        )
        redeployed.append(path)
    return redeployed


async def _issue_step(env: AcmeEnv, session: AsyncSession, req: CertificateRequest) -> None:
    try:
        cert = await _issue(env, session, req)
    except (AcmeError, acme_dns.DnsCheckError) as error:
        record_event(
            session,
            req.grid_id,
            "acme:certificate",
            f"certificate for {req.domains[0]} failed: {error}",
            severity=Severity.ERROR,
        )
        raise
    record_event(session, req.grid_id, "acme:certificate", f"certificate for {cert.subject} issued")
    await redeploy_consumers(env, session, cert, "issued")


async def run_register(env: AcmeEnv, account_id: str) -> bool:
    """Register (or re-register) an account row."""
    return await _perform(env, REGISTER, account_id, _register_step)


async def run_authorize(env: AcmeEnv, authz_id: str) -> bool:
    """Ask the CA for the authorization's challenge."""
    return await _perform(env, AUTHORIZE, authz_id, _authorize_step)


async def run_issue(env: AcmeEnv, request_id: str) -> bool:
    """Verify and issue a certificate request."""
    return await _perform(env, ISSUE, request_id, _issue_step)


def backoff(attempts: int) -> timedelta:
    """Delay after the ``attempts``-th consecutive failure: 1 min, 10 min, 100 min, daily."""
    return BACKOFF[attempts - 1] if 1 <= attempts <= len(BACKOFF) else DAILY


async def renew_due(env: AcmeEnv) -> list[str]:
    """Renew every certificate whose time has come; returns the subjects renewed."""
    now = env.clock()
    async with env.db.session() as session:
        stmt = (
            select(Certificate.id)
            .where(
                or_(Certificate.next_renewal_at <= now, Certificate.next_check_at <= now),
            )
            .order_by(Certificate.next_renewal_at)
            .limit(RENEW_BATCH)
        )
        ids = list((await session.execute(stmt)).scalars())
    renewed: list[str] = []
    for cert_id in ids:
        # The clock again: a long tick must not claim the last certificates with a stale lease.
        now = env.clock()
        renewal_due = await _claim_renewal(env, cert_id, now)
        if renewal_due is None:
            continue
        async with env.db.session() as session:
            cert = await session.get(Certificate, cert_id)
            if cert is not None and await _renew_one(env, session, cert, now, renewal_due):
                renewed.append(cert.subject)
            await _commit(env, session)
    return renewed


async def _claim_renewal(env: AcmeEnv, cert_id: str, now: datetime) -> bool | None:
    """Claim a due certificate for this tick; None when it is not due (any more).

    One committed conditional UPDATE pushes the due times ``RENEW_LEASE`` ahead, so another
    tick running meanwhile skips the certificate. Returns whether the renewal itself is due
    (False: only the ARI check is).
    """
    async with env.db.session() as session:
        found = (
            await session.execute(
                select(Certificate.next_renewal_at, Certificate.next_check_at).where(
                    Certificate.id == cert_id
                )
            )
        ).first()
        if found is None:
            return None
        renewal_due = found.next_renewal_at is not None and found.next_renewal_at <= now
        check_due = found.next_check_at is not None and found.next_check_at <= now
        if not (renewal_due or check_due):
            return None
        still_due, pushed = [], {}
        if renewal_due:
            still_due.append(Certificate.next_renewal_at <= now)
            pushed["next_renewal_at"] = now + RENEW_LEASE
        if check_due:
            still_due.append(Certificate.next_check_at <= now)
            pushed["next_check_at"] = now + RENEW_LEASE
        result = await session.execute(
            update(Certificate)
            .where(Certificate.id == cert_id, and_(*still_due))
            .values(**pushed)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return renewal_due if cast(CursorResult[Any], result).rowcount == 1 else None


async def _renew_one(
    env: AcmeEnv, session: AsyncSession, cert: Certificate, now: datetime, renewal_due: bool
) -> bool:
    subject, cert_id = cert.subject, cert.id
    req = CertificateRequest(
        grid_id=cert.grid_id,
        domains=[subject, *cert.alt_names],
        secret_name=cert.secret_name,
        cert_type=cert.cert_type,
        certificate_id=cert.id,
        state=WorkState.ONGOING.value,
        started_at=now,
    )
    try:
        account = await _account(session, cert.grid_id)
        client = await _client(env, session, account)
        if not renewal_due:
            # Only the ARI check is due: ask the CA whether to renew early.
            when, next_check = await _network(env, session, client.renewal_time, cert.cert_pem)
            if when is None or when > now:
                # Retry-After is respected, but ARI is asked again at least daily.
                cert.next_check_at = min(next_check, now + ARI_MAX_CHECK_INTERVAL)
                if when is not None:
                    cert.next_renewal_at = when
                return False
            # Renewing now: next_check_at keeps the claim's lease until the new certificate
            # is stored (a short Retry-After would let another tick renew it meanwhile).
        await _issue(env, session, req)
        session.add(req)
    except (AcmeError, acme_dns.DnsCheckError) as error:
        await _unit_of_work(env, session).rollback()
        reloaded = await session.get(Certificate, cert_id)
        if reloaded is None:  # removed meanwhile
            return False
        cert = reloaded
        cert.attempts += 1
        retry_at = now + backoff(cert.attempts)
        if isinstance(error, RateLimited) and error.retry_after and error.retry_after > retry_at:
            retry_at = error.retry_after
        cert.last_error = str(error)
        cert.next_renewal_at = retry_at
        record_event(
            session,
            cert.grid_id,
            "acme:renew",
            f"renewal of certificate {subject} failed (attempt {cert.attempts}, next try "
            f"{retry_at.isoformat()}): {error}",
            severity=Severity.ERROR,
        )
        return False
    finish(session, req, WorkState.SUCCESS)
    record_event(session, cert.grid_id, "acme:renew", f"certificate {subject} renewed")
    await redeploy_consumers(env, session, cert, "renewed")
    return True
