"""http-01 end to end: Pebble validates a challenge served by a real container on a real node.

Same setup as tests/e2e/test_deploy.py (the API in the test's loop, a real Dramatiq worker on
Redis, a real agent on a real Docker daemon) plus the run's Pebble. The linked service is busybox
httpd publishing Pebble's http-01 port (its ``httpPort``) on 127.0.0.1, the address
pebble-challtestsrv resolves every name to; a start script writes each ``ACME_CHALLENGE_<token>``
env var into ``/.well-known/acme-challenge/<token>``. Then a service using the certificate runs
with it as env, and a renewal (the tick's function with a clock at the renewal time) redeploys it
with the new certificate.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import docker
import dramatiq
import httpx
import pytest
from cryptography import x509
from sqlalchemy import select

from core.acme_work import AcmeEnv, renew_due
from core.config import Settings
from core.runtime import Runtime
from core.vault import Vault
from models import AcmeAccount, Certificate
from models.db import Database
from tests.acme.test_certificates import verify_chain
from tests.conftest import Caller
from tests.e2e import test_deploy
from tests.e2e.test_deploy import GRID, _service_id, deployed
from tests.e2e.test_real_nodes import Agents, eventually, online
from tests.fixtures.acme import Pebble

pytestmark = pytest.mark.slow

runtime = test_deploy.runtime
worker = test_deploy.worker
agents = test_deploy.agents

DOMAIN = "http01.example.com"
# Each ACME_CHALLENGE_<token>=<key authorization> becomes the file the CA fetches. Tokens are
# base64url and may hold "-", which shells drop from the environment they pass on (not a valid
# shell name), so the script reads its own environment from /proc rather than running `env`.
SERVE_CHALLENGES = (
    "mkdir -p /www/.well-known/acme-challenge && "
    "tr '\\0' '\\n' < /proc/$$/environ | grep '^ACME_CHALLENGE_' | "
    "while IFS='=' read -r name value; do "
    'echo -n "$value" > "/www/.well-known/acme-challenge/${name#ACME_CHALLENGE_}"; done; '
    "exec httpd -f -p 80 -h /www"
)


async def json_of(client: httpx.AsyncClient, admin: Caller, url: str) -> dict[str, Any]:
    """GET ``url`` and return its JSON body (asserting 200)."""
    response = await client.get(url, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_http01_through_a_forced_deploy_and_a_renewal_redeploys_the_consumer(
    client: httpx.AsyncClient,
    admin: Caller,
    agents: Agents,
    worker: dramatiq.Worker,
    docker_hosts: list[str],
    docker_clients: list[docker.DockerClient],
    busybox_image: str,
    db: Database,
    vault: Vault,
    settings: Settings,
    runtime: Runtime,
    pebble: Pebble,
) -> None:
    started = time.monotonic()
    grid = await client.post(
        "/v1/grids", json={"name": GRID, "initial_size": 1}, headers=admin.headers
    )
    assert grid.status_code == 201, grid.text
    agents.start(
        "node-1", docker_hosts[0], KONTENA_TOKEN=grid.json()["token"], KONTENA_POD_SYNC_INTERVAL="5"
    )
    # Pebble as this grid's CA; its http-01 port is this grid's (grid-scoped config keys).
    config = await client.patch(
        "/v1/config",
        json={
            "acme.directory": pebble.directory,
            "acme.ca_bundle": pebble.ca,
            f"grid.{GRID}.acme.http01_port": int(pebble.http_port),
        },
        headers=admin.headers,
    )
    assert config.status_code == 201, config.text
    await eventually(online(client, admin, "node-1"), deadline=30, what="node online")

    registered = await client.post(
        f"/v1/certificates/{GRID}/register",
        json={"email": "ops@example.com"},
        headers=admin.headers,
    )
    assert registered.status_code == 201, registered.text
    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": "lb",
            "image": busybox_image,
            "stateful": False,
            "cmd": ["/bin/sh", "-c", SERVE_CHALLENGES],
            "ports": [
                {"node_port": int(pebble.http_port), "container_port": 80, "ip": "127.0.0.1"}
            ],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text

    async def account_ready() -> bool:
        async with db.session() as session:
            state = (await session.execute(select(AcmeAccount.state))).scalar()
        return state == "success"

    await eventually(account_ready, deadline=30, what="ACME account registered")

    authorized = await client.post(
        f"/v1/grids/{GRID}/domain_authorizations",
        json={"domain": DOMAIN, "authorization_type": "http-01", "linked_service": "lb"},
        headers=admin.headers,
    )
    assert authorized.status_code == 201, authorized.text
    assert authorized.json()["linked_service"] == {"id": f"{GRID}/null/lb"}

    # created (asking the CA) → deploying (the forced deploy runs) → created (delivered).
    seen: list[str] = []

    async def delivered() -> dict[str, Any] | None:
        body = await json_of(client, admin, f"/v1/domain_authorizations/{GRID}/{DOMAIN}")
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        settled = body["status"] != "deploying" and "deploying" in seen
        return body if settled or body["status"] not in ("created", "deploying") else None

    authz = await eventually(delivered, deadline=90, what="challenge deployed", interval=0.05)
    assert authz["status"] == "created", (seen, authz)
    assert "deploying" in seen, seen
    token = authz["challenge_opts"]["token"]
    assert authz["challenge"]["type"] == "http-01"

    service_id = await _service_id(db, "lb")
    (container,) = docker_clients[0].containers.list(
        filters={"label": f"io.kontena.service.id={service_id}"}
    )
    env = container.attrs["Config"]["Env"]
    assert f"ACME_CHALLENGE_{token}={authz['challenge_opts']['content']}" in env

    requested = await client.post(
        f"/v1/grids/{GRID}/certificates", json={"domains": [DOMAIN]}, headers=admin.headers
    )
    assert requested.status_code == 201, requested.text
    request_url = f"/v1/grids/{GRID}/certificate_requests/{requested.json()['id']}"

    async def finished() -> dict[str, Any] | None:
        body = await json_of(client, admin, request_url)
        return body if body["state"] in ("success", "error") else None

    outcome = await eventually(finished, deadline=60, what="certificate issued", interval=0.1)
    assert outcome["state"] == "success", outcome.get("reason")
    authz = await json_of(client, admin, f"/v1/domain_authorizations/{GRID}/{DOMAIN}")
    assert authz["status"] == "validated"

    async with db.session() as session:
        cert = (await session.execute(select(Certificate))).scalar_one()
    leaf = verify_chain(cert.cert_pem + cert.chain_pem, await pebble.root())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [DOMAIN]
    print(f"\nhttp-01 through a forced deploy, end to end: {time.monotonic() - started:.2f} s")

    # A service using the certificate gets it as env; the renewal tick redeploys it.
    created = await client.post(
        f"/v1/grids/{GRID}/services",
        json={
            "name": "app",
            "image": busybox_image,
            "stateful": False,
            "cmd": ["sleep", "3600"],
            "certificates": [{"subject": DOMAIN, "name": "SSL_CERTS", "type": "env"}],
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    first = await client.post(
        f"/v1/services/{GRID}/null/app/deploy", json={}, headers=admin.headers
    )
    assert (await deployed(client, admin, "app", first.json()))["state"] == "success"
    app_id = await _service_id(db, "app")
    assert ssl_certs(docker_clients[0], app_id).startswith(cert.cert_pem)

    started = time.monotonic()
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme = AcmeEnv(db=db, vault=vault, settings=settings, sender=runtime.sender, clock=lambda: due)
    assert await renew_due(acme) == [DOMAIN]
    async with db.session() as session:
        renewed = (await session.execute(select(Certificate))).scalar_one()
    assert renewed.cert_pem != cert.cert_pem
    deploys = await json_of(client, admin, f"/v1/services/{GRID}/null/app/deploys")
    (redeploy,) = [d for d in deploys["deploys"] if d["id"] != first.json()["id"]]
    assert (await deployed(client, admin, "app", redeploy))["state"] == "success"
    assert ssl_certs(docker_clients[0], app_id).startswith(renewed.cert_pem)
    print(f"renewal reaching the consuming container: {time.monotonic() - started:.2f} s")


def ssl_certs(daemon: docker.DockerClient, service_id: str) -> str:
    """The SSL_CERTS env value of the service's (single) running container."""
    (container,) = daemon.containers.list(filters={"label": f"io.kontena.service.id={service_id}"})
    for item in container.attrs["Config"]["Env"]:
        if item.startswith("SSL_CERTS="):
            return str(item.removeprefix("SSL_CERTS="))
    return ""
