"""ACME work running alongside other work: the challenge window, two ticks, open transactions.

All against the run's PostgreSQL and Pebble. Deploys are real rows and jobs; no node runs them
(tests/e2e/test_acme_http01.py covers real containers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

import core.acme_work
from core.acme_work import AcmeEnv, renew_due, renewal_at, run_issue
from core.deployer import DeployEnv, run_deploy
from core.jobs import Job
from core.pods import load_pod_inputs
from core.vault import Vault
from models import (
    Certificate,
    CertificateRequest,
    DomainAuthorization,
    EventLog,
    Grid,
    Service,
    ServiceDeploy,
)
from models.db import Database
from tests.acme.test_certificates import GRID, drain, issue_legacy, register, setup_grid
from tests.acme.test_challenge_deploys import NoNodes, add_service
from tests.conftest import Caller
from tests.fixtures.acme import Pebble

LB_SPEC = {"ports": [{"node_port": 80, "container_port": 80}]}


class ListPodsOnSend:
    """A JobSender that lists the linked service's pods the moment a deploy job is sent.

    That is what an agent may do right then; ``send`` runs in a worker thread while the
    sending coroutine waits, so the listing runs on the test's loop in that very window.
    """

    def __init__(self, list_pods: Callable[[], Awaitable[tuple[str, list[str]]]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.list_pods = list_pods
        self.seen: list[tuple[str, list[str]]] = []

    def send(self, job: Job) -> None:
        """List the pods when ``job`` is a deploy."""
        if job.actor == "deploys.run":
            future = asyncio.run_coroutine_threadsafe(self.list_pods(), self.loop)
            self.seen.append(future.result(timeout=30))


async def authorize_http(client: httpx.AsyncClient, admin: Caller, domain: str, lb: str) -> None:
    """POST an http-01 authorization of ``domain`` linked to service ``lb``."""
    response = await client.post(
        f"/v1/grids/{GRID}/domain_authorizations",
        json={"domain": domain, "authorization_type": "http-01", "linked_service": lb},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text


async def test_pods_listed_while_the_authorization_is_ongoing_carry_its_challenge(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await register(client, admin)
    await drain(acme_env)
    service_id = await add_service(db, "lb", LB_SPEC, state="initialized")
    domain = "lb.example.com"

    async def list_pods() -> tuple[str, list[str]]:
        async with db.session() as session:
            service = await session.get(Service, service_id)
            assert service is not None
            grid = await session.get(Grid, service.grid_id)
            assert grid is not None
            inputs = await load_pod_inputs(session, vault, grid, service)
            state = (
                await session.execute(
                    select(DomainAuthorization.state).where(DomainAuthorization.domain == domain)
                )
            ).scalar_one()
        return state, inputs.secret_env

    acme_env.sender = sender = ListPodsOnSend(list_pods)
    await authorize_http(client, admin, domain, "lb")
    await drain(acme_env)

    async with db.session() as session:
        authz = (await session.execute(select(DomainAuthorization))).scalar_one()
    opts = authz.challenge_opts or {}
    assert authz.state == "success" and opts.get("token")
    assert len(sender.seen) == 1
    state, env = sender.seen[0]
    # The deploy went out before the row was final: its pods must carry the challenge anyway.
    assert state == "ongoing"
    assert f"ACME_CHALLENGE_{opts['token']}={opts['content']}" in env


async def test_two_renewal_ticks_at_once_renew_a_certificate_once(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)
    async with db.session() as session:
        cert = (await session.execute(select(Certificate))).scalar_one()
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: due

    first, second = await asyncio.gather(renew_due(acme_env), renew_due(acme_env))

    assert sorted(first + second) == [cert.subject]
    async with db.session() as session:
        renewals = (
            await session.execute(
                select(CertificateRequest).where(CertificateRequest.certificate_id == cert.id)
            )
        ).scalars()
        events = list(
            (
                await session.execute(
                    select(EventLog.message).where(EventLog.message.like("%renewed"))
                )
            ).scalars()
        )
        renewed = await session.get(Certificate, cert.id)
    # The first issuance's request and one renewal's.
    assert len(list(renewals)) == 2
    assert events == [f"certificate {cert.subject} renewed"]
    assert renewed is not None and renewed.cert_pem != cert.cert_pem
    # The new certificate's times replaced the claim's lease.
    assert renewed.next_renewal_at == renewal_at(renewed.cert_pem)
    assert renewed.next_check_at == due


async def idle_transactions(db: Database) -> list[str]:
    """Queries of this database's other connections left idle inside a transaction."""
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        )
        return [str(query) for query in rows.scalars()]


async def test_no_transaction_stays_open_across_acme_calls_or_the_deploy_wait(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every ACME/DNS call and the challenge deploy wait start with no transaction open.

    The real calls run; ``asyncio.to_thread`` and ``_wait_for_deploy`` in core.acme_work are
    only wrapped so each first records the idle-in-transaction connections PostgreSQL reports
    at that moment.
    """
    real_to_thread, real_wait = asyncio.to_thread, core.acme_work._wait_for_deploy
    seen: list[tuple[str, list[str]]] = []

    async def observed_call(call: Callable[..., Any], *args: Any) -> Any:
        seen.append((getattr(call, "__name__", str(call)), await idle_transactions(db)))
        return await real_to_thread(call, *args)

    async def observed_wait(env: AcmeEnv, authz: DomainAuthorization) -> None:
        seen.append(("wait for deploy", await idle_transactions(db)))
        await real_wait(env, authz)

    monkeypatch.setattr(core.acme_work.asyncio, "to_thread", observed_call)
    monkeypatch.setattr(core.acme_work, "_wait_for_deploy", observed_wait)
    await setup_grid(client, admin, db, vault, pebble)
    # Registration, dns-01 authorization, issuance, then a renewal.
    await issue_legacy(client, admin, acme_env, pebble)
    async with db.session() as session:
        cert = (await session.execute(select(Certificate))).scalar_one()
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: due
    assert await renew_due(acme_env) == [cert.subject]

    # An http-01 authorization and a request waiting for its challenge deploy (which fails).
    await add_service(db, "lb", LB_SPEC, state="initialized")
    await authorize_http(client, admin, "lb.example.com", "lb")
    await drain(acme_env)
    async with db.session() as session:
        deploy_id = (await session.execute(select(ServiceDeploy.id))).scalar_one()
    await run_deploy(DeployEnv(db=db, vault=vault, rpc=NoNodes()), deploy_id)
    requested = await client.post(
        f"/v1/grids/{GRID}/certificates",
        json={"domains": ["lb.example.com"]},
        headers=admin.headers,
    )
    assert requested.status_code == 201, requested.text
    assert await run_issue(acme_env, requested.json()["id"])

    names = {name for name, _ in seen}
    assert {"AcmeClient", "register", "dns_challenge", "http_challenge"} <= names
    assert {"txt_values", "validate", "issue", "wait for deploy"} <= names
    assert [(name, idle) for name, idle in seen if idle] == []


async def test_the_challenge_deploys_of_a_request_are_awaited_together(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    """Domain 2's failed deploy fails the request while domain 1's is still pending.

    Awaited one after the other, the request would sit the whole wait on domain 1's deploy.
    """
    await setup_grid(client, admin, db, vault, pebble)
    await register(client, admin)
    await drain(acme_env)
    await add_service(db, "lb1", LB_SPEC, state="initialized")
    lb2 = await add_service(db, "lb2", LB_SPEC, state="initialized")
    await authorize_http(client, admin, "one.example.com", "lb1")
    await authorize_http(client, admin, "two.example.com", "lb2")
    await drain(acme_env)
    async with db.session() as session:
        second = (
            await session.execute(select(ServiceDeploy.id).where(ServiceDeploy.service_id == lb2))
        ).scalar_one()
    await run_deploy(DeployEnv(db=db, vault=vault, rpc=NoNodes()), second)
    # Far longer than the test should take: only a concurrent wait ends it early.
    acme_env.challenge_deploy_wait = 600.0

    requested = await client.post(
        f"/v1/grids/{GRID}/certificates",
        json={"domains": ["one.example.com", "two.example.com"]},
        headers=admin.headers,
    )
    assert requested.status_code == 201, requested.text
    assert await asyncio.wait_for(run_issue(acme_env, requested.json()["id"]), timeout=120)
    async with db.session() as session:
        row = await session.get(CertificateRequest, requested.json()["id"])
        first_deploy = (
            await session.execute(select(ServiceDeploy.state).where(ServiceDeploy.id != second))
        ).scalar_one()
    assert row is not None and row.state == "error"
    assert row.reason is not None
    assert row.reason.startswith("Deploy of the http-01 challenge for two.example.com failed: ")
    assert first_deploy == "created"
