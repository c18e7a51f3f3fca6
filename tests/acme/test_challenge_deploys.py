"""http-01 deploy states, consumers redeployed after a renewal, #2881, per-grid ACME settings.

All against the run's Pebble. The deploys here are the real deploy rows and jobs; only the
deploy itself runs in-process (no node is needed where the test is about the row, not a container:
tests/e2e/test_acme_http01.py covers the real container).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import msgspec
from sqlalchemy import delete, select

from core.acme_work import AcmeEnv, renew_due
from core.deployer import DeployEnv, run_deploy
from core.jobs import Job
from core.pods import load_pod_inputs
from core.vault import Vault
from models import (
    AcmeAccount,
    Certificate,
    DomainAuthorization,
    EventLog,
    Grid,
    Service,
    ServiceDeploy,
)
from models.base import utcnow
from models.db import Database
from models.services import NULL_STACK
from tests.acme.test_certificates import (
    DOMAIN,
    GRID,
    drain,
    issue_legacy,
    register,
    setup_grid,
)
from tests.conftest import Caller
from tests.fixtures.acme import Pebble
from tests.fixtures.grid_rows import create_grid_row


class RecordingSender:
    """A JobSender that remembers what it was asked to send."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def send(self, job: Job) -> None:
        """Record ``job``."""
        self.jobs.append(job)


class NoNodes:
    """Node RPC for a grid without nodes: a deploy fails at placement, before any call."""

    async def request(self, node: Any, method: str, params: list[Any], timeout: float = 5) -> Any:
        raise AssertionError("no node should be called")

    async def notify(self, node: Any, method: str, params: list[Any]) -> None:
        raise AssertionError("no node should be called")


async def add_service(db: Database, name: str, spec: dict[str, Any], state: str = "running") -> str:
    """A service row in the test grid; returns its id."""
    async with db.session() as session:
        grid = (await session.execute(select(Grid).where(Grid.name == GRID))).scalar_one()
        service = Service(
            grid_id=grid.id, stack=NULL_STACK, name=name, image="busybox", spec=spec, state=state
        )
        session.add(service)
        await session.commit()
        return service.id


async def authz_status(client: httpx.AsyncClient, admin: Caller, domain: str) -> dict[str, Any]:
    """GET the authorization."""
    response = await client.get(f"/v1/domain_authorizations/{GRID}/{domain}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_http01_challenge_deploy_states_and_a_failed_deploy_fails_the_request(
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
    service_id = await add_service(
        db, "lb", {"ports": [{"node_port": 80, "container_port": 80}]}, state="initialized"
    )
    acme_env.sender = sender = RecordingSender()
    domain = "lb.example.com"
    response = await client.post(
        f"/v1/grids/{GRID}/domain_authorizations",
        json={"domain": domain, "authorization_type": "http-01", "linked_service": "lb"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    await drain(acme_env)

    authz = await authz_status(client, admin, domain)
    assert authz["status"] == "deploying"
    assert authz["challenge"]["type"] == "http-01"
    token, content = authz["challenge_opts"]["token"], authz["challenge_opts"]["content"]
    assert content.startswith(f"{token}.")
    async with db.session() as session:
        deploy = (await session.execute(select(ServiceDeploy))).scalar_one()
        service = await session.get(Service, service_id)
        grid = await session.get(Grid, deploy.grid_id)
        assert service is not None and grid is not None
        assert deploy.service_id == service_id and deploy.force
        # The forced deploy bumped the revision, so running containers would be recreated.
        assert service.revision == 2
        inputs = await load_pod_inputs(session, vault, grid, service)
    assert [(j.actor, j.args) for j in sender.jobs] == [("deploys.run", (deploy.id,))]
    assert f"ACME_CHALLENGE_{token}={content}" in inputs.secret_env

    # The grid has no node: the deploy fails, and so does the authorization's status.
    await run_deploy(DeployEnv(db=db, vault=vault, rpc=NoNodes()), deploy.id)
    assert (await authz_status(client, admin, domain))["status"] == "deploy_error"

    requested = await client.post(
        f"/v1/grids/{GRID}/certificates", json={"domains": [domain]}, headers=admin.headers
    )
    assert requested.status_code == 201, requested.text
    await drain(acme_env)
    polled = await client.get(
        f"/v1/grids/{GRID}/certificate_requests/{requested.json()['id']}", headers=admin.headers
    )
    assert polled.json()["state"] == "error"
    assert polled.json()["reason"].startswith(
        f"Deploy of the http-01 challenge for {domain} failed: "
    )


async def test_issue_and_renewal_redeploy_the_services_using_the_certificate(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)
    by_secret = await add_service(
        db, "web", {"secrets": [{"secret": "WWW_BUNDLE", "name": "SSL_CERTS", "type": "env"}]}
    )
    by_cert = await add_service(
        db, "api", {"certificates": [{"subject": DOMAIN, "name": "SSL_CERTS", "type": "env"}]}
    )
    await add_service(
        db, "idle", {"secrets": [{"secret": "WWW_BUNDLE", "name": "X"}]}, state="stopped"
    )
    await add_service(db, "other", {"secrets": []})
    acme_env.sender = sender = RecordingSender()
    async with db.session() as session:
        cert = (await session.execute(select(Certificate))).scalar_one()
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: due
    assert await renew_due(acme_env) == [DOMAIN]

    async with db.session() as session:
        deploys = {
            d.service_id: d for d in (await session.execute(select(ServiceDeploy))).scalars()
        }
        services = {s.name: s for s in (await session.execute(select(Service))).scalars()}
        renewed = (await session.execute(select(Certificate))).scalar_one()
        grid = await session.get(Grid, renewed.grid_id)
        assert grid is not None
        api_env = (await load_pod_inputs(session, vault, grid, services["api"])).secret_env
        messages = list((await session.execute(select(EventLog.message))).scalars())
    assert set(deploys) == {by_secret, by_cert}
    assert all(d.state == "created" for d in deploys.values())
    assert sorted(j.args[0] for j in sender.jobs if j.actor == "deploys.run") == sorted(
        d.id for d in deploys.values()
    )
    # New containers: the secret's change and the certificate's forced deploy bump revisions.
    assert services["web"].revision == 2 and services["api"].revision == 2
    assert services["idle"].revision == 2 and services["other"].revision == 1
    ssl = [e for e in api_env if e.startswith("SSL_CERTS=")]
    assert len(ssl) == 1 and ssl[0].startswith(f"SSL_CERTS={renewed.cert_pem}")
    assert f"certificate {DOMAIN} renewed: redeploying service {GRID}/null/web" in messages
    assert f"certificate {DOMAIN} renewed: redeploying service {GRID}/null/api" in messages

    # Renewed again before those deploys started: they pick the new values up, no second one.
    assert renewed.next_renewal_at is not None
    later = renewed.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: later
    assert await renew_due(acme_env) == [DOMAIN]
    async with db.session() as session:
        count = len(list((await session.execute(select(ServiceDeploy.id))).scalars()))
        messages = list((await session.execute(select(EventLog.message))).scalars())
    assert count == 2
    assert any(m.endswith("(joins the deploy already pending)") for m in messages)


async def test_no_renewal_when_the_linked_service_is_gone_and_last_error_says_so(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    """Kontena #2881: the renewal crashed once the authorization's linked service was removed.

    The certificate is issued through dns-01, then its authorization is turned into an http-01
    one linked to a service that is then removed (the state a removed load balancer leaves).
    """
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)
    service_id = await add_service(db, "lb", {"ports": ["80:80"]})
    async with db.session() as session:
        authz = (await session.execute(select(DomainAuthorization))).scalar_one()
        authz.authorization_type, authz.linked_service_id = "http-01", service_id
        await session.commit()
        await session.execute(delete(Service).where(Service.id == service_id))
        await session.commit()
        cert = (await session.execute(select(Certificate))).scalar_one()
    before = cert.cert_pem
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: due
    assert await renew_due(acme_env) == []
    async with db.session() as session:
        failed = (await session.execute(select(Certificate))).scalar_one()
        events = list((await session.execute(select(EventLog.message))).scalars())
    assert failed.cert_pem == before
    assert failed.last_error == f"The linked service of domain {DOMAIN} was removed"
    assert failed.attempts == 1 and failed.next_renewal_at == due + timedelta(minutes=1)
    assert any("was removed" in m and "renewal of certificate" in m for m in events)


async def test_a_grids_own_directory_and_ca_bundle_win_over_the_global_ones(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await create_grid_row(db, vault, GRID)
    # The global keys (and the environment) point nowhere usable; the grid's keys at Pebble.
    acme_env.settings = msgspec.structs.replace(
        acme_env.settings, acme_directory="https://127.0.0.1:9/dir", acme_ca_bundle=""
    )
    response = await client.patch(
        "/v1/config",
        json={
            "acme.directory": "https://127.0.0.1:9/nothing-here",
            "acme.ca_bundle": "/nonexistent/ca.pem",
            f"grid.{GRID}.acme.directory": pebble.directory,
            f"grid.{GRID}.acme.ca_bundle": pebble.ca,
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    account = await register(client, admin)
    assert account["directory"] == pebble.directory
    await drain(acme_env)
    async with db.session() as session:
        row = (await session.execute(select(AcmeAccount))).scalar_one()
    assert row.state == "success", row.reason
    assert row.account_url is not None and row.account_url.startswith(
        pebble.directory.rsplit("/", 1)[0]
    )

    # Without the grid's keys the global ones apply (and fail: nothing listens there).
    await client.patch(
        "/v1/config",
        json={f"grid.{GRID}.acme.directory": None, f"grid.{GRID}.acme.ca_bundle": None},
        headers=admin.headers,
    )
    account = await register(client, admin)
    assert account["directory"] == "https://127.0.0.1:9/nothing-here"
    started = utcnow()
    await drain(acme_env)
    async with db.session() as session:
        row = (await session.execute(select(AcmeAccount))).scalar_one()
    assert row.state == "error" and row.finished_at is not None and row.finished_at >= started
