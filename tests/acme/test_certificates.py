"""Let's Encrypt against the run's Pebble: register, dns-01, certificates, renewals, 422s."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from cryptography import x509
from sqlalchemy import select

from core.acme_work import AcmeEnv, run_authorize, run_issue, run_register
from core.acme_work import renew_due as renew_due
from core.vault import Vault
from models import AcmeAccount, Certificate, CertificateRequest, DomainAuthorization, Service
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.acme import Pebble
from tests.fixtures.grid_rows import create_grid_row

GRID = "le"
DOMAIN = "www.example.com"


async def drain(env: AcmeEnv) -> None:
    """Run every ACME job waiting in ``created`` (what the workers would do)."""
    for model, run in (
        (AcmeAccount, run_register),
        (DomainAuthorization, run_authorize),
        (CertificateRequest, run_issue),
    ):
        async with env.db.session() as session:
            ids = list(
                (await session.execute(select(model.id).where(model.state == "created"))).scalars()
            )
        for row_id in ids:
            await run(env, row_id)


async def setup_grid(
    client: httpx.AsyncClient, admin: Caller, db: Database, vault: Vault, pebble: Pebble
) -> None:
    """A grid and the global ACME config pointing at Pebble."""
    await create_grid_row(db, vault, GRID)
    response = await client.patch(
        "/v1/config",
        json={"acme.directory": pebble.directory, "acme.ca_bundle": pebble.ca},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text


async def register(client: httpx.AsyncClient, admin: Caller) -> dict[str, Any]:
    """POST register, asserting the 201."""
    response = await client.post(
        f"/v1/certificates/{GRID}/register",
        json={"email": "ops@example.com"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def authorize_dns(
    client: httpx.AsyncClient, admin: Caller, env: AcmeEnv, pebble: Pebble, domain: str = DOMAIN
) -> dict[str, Any]:
    """Authorize ``domain`` with dns-01, run the job, publish the TXT record."""
    response = await client.post(
        f"/v1/grids/{GRID}/domain_authorizations", json={"domain": domain}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    await drain(env)
    response = await client.get(f"/v1/domain_authorizations/{GRID}/{domain}", headers=admin.headers)
    assert response.status_code == 200
    authz: dict[str, Any] = response.json()
    opts = authz["challenge_opts"]
    assert opts["record_name"] == f"_acme-challenge.{domain}"
    assert opts["record_type"] == "TXT"
    await pebble.set_txt(opts["record_name"], opts["record_content"])
    return authz


async def secret(client: httpx.AsyncClient, admin: Caller, name: str) -> str:
    """A grid secret's value."""
    response = await client.get(f"/v1/secrets/{GRID}/{name}", headers=admin.headers)
    assert response.status_code == 200, response.text
    value: str = response.json()["value"]
    return value


def verify_chain(fullchain: str, root: x509.Certificate) -> x509.Certificate:
    """Check each certificate is signed by the next and the last by ``root``; the leaf."""
    certs = x509.load_pem_x509_certificates(fullchain.encode())
    for child, parent in zip(certs, [*certs[1:], root], strict=True):
        child.verify_directly_issued_by(parent)
    return certs[0]


async def issue_legacy(
    client: httpx.AsyncClient, admin: Caller, env: AcmeEnv, pebble: Pebble
) -> None:
    """Register, authorize www.example.com, request the WWW_* secrets, run the jobs."""
    await register(client, admin)
    await drain(env)
    await authorize_dns(client, admin, env, pebble)
    response = await client.post(
        f"/v1/certificates/{GRID}/certificate",
        json={"secret_name": "WWW", "domains": [DOMAIN]},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json() == ["WWW_PRIVATE_KEY", "WWW_CERTIFICATE", "WWW_BUNDLE"]
    await drain(env)
    async with env.db.session() as session:
        request = (await session.execute(select(CertificateRequest))).scalar_one()
    assert request.state == "success", request.reason


async def test_dns01_certificate_into_legacy_secrets(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)

    response = await client.get(f"/v1/certificates/{GRID}/{DOMAIN}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["subject"] == DOMAIN and body["alt_names"] == []
    assert body["last_error"] is None and body["days_to_expiry"] > 0
    authz = await client.get(f"/v1/domain_authorizations/{GRID}/{DOMAIN}", headers=admin.headers)
    assert authz.json()["status"] == "validated"

    root = await pebble.root()
    leaf = verify_chain(await secret(client, admin, "WWW_CERTIFICATE"), root)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [DOMAIN]
    key_pem = await secret(client, admin, "WWW_PRIVATE_KEY")
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    bundle = await secret(client, admin, "WWW_BUNDLE")
    assert bundle.endswith(key_pem) and "BEGIN CERTIFICATE" in bundle

    listed = await client.get(f"/v1/grids/{GRID}/certificates", headers=admin.headers)
    assert [c["subject"] for c in listed.json()["certificates"]] == [DOMAIN]


async def test_certificate_endpoint_with_alt_names(
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
    for domain in ("a.example.org", "b.example.org"):
        await authorize_dns(client, admin, acme_env, pebble, domain)
    response = await client.post(
        f"/v1/grids/{GRID}/certificates",
        json={"domains": ["a.example.org", "b.example.org"]},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    request = response.json()
    assert request["state"] == "created" and request["subject"] == "a.example.org"
    await drain(acme_env)
    polled = await client.get(
        f"/v1/grids/{GRID}/certificate_requests/{request['id']}", headers=admin.headers
    )
    assert polled.json()["state"] == "success", polled.text
    assert polled.json()["certificate"] == f"{GRID}/a.example.org"
    cert = await client.get(f"/v1/certificates/{GRID}/a.example.org", headers=admin.headers)
    assert cert.json()["alt_names"] == ["b.example.org"]
    gone = await client.delete(f"/v1/certificates/{GRID}/a.example.org", headers=admin.headers)
    assert gone.status_code == 200 and gone.json() == {}
    missing = await client.get(f"/v1/certificates/{GRID}/a.example.org", headers=admin.headers)
    assert missing.status_code == 404 and missing.json() == {"error": "Not found"}


async def test_missing_txt_record_fails_the_request(
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
    authz = await authorize_dns(client, admin, acme_env, pebble, "notxt.example.net")
    await pebble.clear_txt(authz["challenge_opts"]["record_name"])
    response = await client.post(
        f"/v1/grids/{GRID}/certificates",
        json={"domains": ["notxt.example.net"]},
        headers=admin.headers,
    )
    await drain(acme_env)
    polled = await client.get(
        f"/v1/grids/{GRID}/certificate_requests/{response.json()['id']}", headers=admin.headers
    )
    assert polled.json()["state"] == "error"
    assert polled.json()["reason"] == "Expected DNS record not present for domain notxt.example.net"


async def test_renewal_when_due_and_backoff_on_dns_failure(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)
    before = await secret(client, admin, "WWW_CERTIFICATE")
    async with db.session() as session:
        cert = (await session.execute(select(Certificate))).scalar_one()
    # Not due yet: nothing happens.
    acme_env.clock = utcnow
    assert await renew_due(acme_env) == []
    # Inside the renewal window (1/3 of the lifetime left): renewed, secrets rewritten.
    assert cert.next_renewal_at is not None
    due = cert.next_renewal_at + timedelta(minutes=1)
    acme_env.clock = lambda: due
    assert await renew_due(acme_env) == [DOMAIN]
    after = await secret(client, admin, "WWW_CERTIFICATE")
    assert after != before
    verify_chain(after, await pebble.root())
    async with db.session() as session:
        renewed = (await session.execute(select(Certificate))).scalar_one()
    assert renewed.last_renewed_at == due and renewed.last_error is None
    assert renewed.next_renewal_at is not None

    # DNS fails (SERVFAIL): last_error and the 1 min, 10 min, 100 min, daily schedule.
    await pebble.set_servfail(f"_acme-challenge.{DOMAIN}")
    try:
        now = renewed.next_renewal_at + timedelta(seconds=1)
        for attempt, delay in enumerate(
            [
                timedelta(minutes=1),
                timedelta(minutes=10),
                timedelta(minutes=100),
                timedelta(days=1),
            ],
            start=1,
        ):
            acme_env.clock = lambda now=now: now  # type: ignore[misc]
            assert await renew_due(acme_env) == []
            async with db.session() as session:
                failed = (await session.execute(select(Certificate))).scalar_one()
            assert failed.attempts == attempt
            assert failed.last_error is not None and "DNS lookup" in failed.last_error
            assert failed.next_renewal_at == now + delay
            now = now + delay
    finally:
        await pebble.clear_servfail(f"_acme-challenge.{DOMAIN}")
    assert await secret(client, admin, "WWW_CERTIFICATE") == after
    events = await client.get(f"/v1/grids/{GRID}/event_logs", headers=admin.headers)
    if events.status_code == 200:
        messages = [e.get("message", "") for e in events.json().get("logs", [])]
        assert any("renewed" in m for m in messages)


async def test_422s(
    client: httpx.AsyncClient, admin: Caller, db: Database, vault: Vault, pebble: Pebble
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    authz_url = f"/v1/grids/{GRID}/domain_authorizations"
    no_reg = await client.post(authz_url, json={"domain": DOMAIN}, headers=admin.headers)
    assert no_reg.status_code == 422
    assert no_reg.json() == {"error": {"le_registration": "Let's Encrypt registration missing"}}
    cert = await client.post(
        f"/v1/certificates/{GRID}/certificate",
        json={"secret_name": "X", "domains": [DOMAIN]},
        headers=admin.headers,
    )
    assert cert.json() == {"error": {"le_registration": "Let's Encrypt registration missing"}}

    await register(client, admin)
    sni = await client.post(
        authz_url,
        json={"domain": DOMAIN, "authorization_type": "tls-sni-01", "linked_service": "lb"},
        headers=admin.headers,
    )
    assert sni.status_code == 422
    message = sni.json()["error"]["authorization_type"]
    assert "2019" in message and "http-01" in message and "dns-01" in message

    unknown = await client.post(
        authz_url,
        json={"domain": DOMAIN, "authorization_type": "http-01", "linked_service": "infra/lb"},
        headers=admin.headers,
    )
    assert unknown.status_code == 422
    assert unknown.json() == {"error": {"linked_service": "Linked service not found: infra/lb"}}

    async with db.session() as session:
        grid_id = (await session.execute(select(AcmeAccount.grid_id))).scalar_one()
        session.add(
            Service(
                grid_id=grid_id,
                stack="infra",
                name="lb",
                image="busybox",
                spec={"ports": [{"node_port": 443, "container_port": 443}]},
            )
        )
        await session.commit()
    no_80 = await client.post(
        authz_url,
        json={"domain": DOMAIN, "authorization_type": "http-01", "linked_service": "infra/lb"},
        headers=admin.headers,
    )
    assert no_80.status_code == 422
    assert no_80.json() == {
        "error": {"linked_service": "Linked service does not have port 80 open"}
    }

    no_authz = await client.post(
        f"/v1/grids/{GRID}/certificates",
        json={"domains": ["nope.example.com"]},
        headers=admin.headers,
    )
    assert no_authz.status_code == 422
    assert no_authz.json() == {
        "error": {"authorization": "Domain authorization not found for domain nope.example.com"}
    }
    missing = await client.get(
        f"/v1/domain_authorizations/{GRID}/x.example.com", headers=admin.headers
    )
    assert missing.status_code == 404
    assert missing.json() == {"error": "Domain authorization not found)"}
