"""ARI (RFC 9773 renewalInfo): the client picks a time in the CA's window and honours Retry-After.

Pebble 2.4 as Debian packages it serves no ``renewalInfo``, so a small loopback HTTP stub stands
in for the CA's directory and renewalInfo resources only (a mock, because no real ARI server
runs here): its directory is Pebble's own with a ``renewalInfo`` URL added, so nonces, accounts,
orders and the renewal itself still go to the run's Pebble.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from core.acme_client import AcmeClient, new_account_key
from core.acme_work import AcmeEnv, renew_due
from core.vault import Vault
from models import AcmeAccount, Certificate
from models.db import Database
from tests.acme.test_certificates import DOMAIN, issue_legacy, setup_grid
from tests.conftest import Caller
from tests.fixtures.acme import Pebble


@dataclass
class AriStub:
    """What the stub serves: Pebble's directory plus renewalInfo, and the window to answer."""

    directory: dict[str, Any]
    window: tuple[datetime, datetime] | None = None
    retry_after: str | None = None
    status: int = 200
    asked: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, start: datetime, end: datetime, retry_after: str | None = None) -> None:
        """Serve this suggested window (and Retry-After) from now on."""
        self.window, self.retry_after, self.status = (start, end), retry_after, 200


def _handler(stub: AriStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/dir":
                body = {**stub.directory, "renewalInfo": f"{stub.url}/renewal-info"}
                self._send(200, body)
            elif self.path.startswith("/renewal-info/"):
                stub.asked.append(self.path.rsplit("/", 1)[1])
                if stub.status != 200 or stub.window is None:
                    self._send(stub.status if stub.status != 200 else 404, {})
                    return
                start, end = stub.window
                window = {"start": start.isoformat(), "end": end.isoformat()}
                self._send(200, {"suggestedWindow": window}, stub.retry_after)
            else:
                self._send(404, {})

        def _send(self, code: int, body: dict[str, Any], retry_after: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def ari(pebble: Pebble) -> Iterator[AriStub]:
    """The stub on a free loopback port, stopped afterwards."""
    directory = httpx.get(
        pebble.directory, verify=ssl.create_default_context(cafile=pebble.ca)
    ).json()
    assert "renewalInfo" not in directory, "this Pebble serves ARI itself: test against it"
    stub = AriStub(directory=directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def leaf_pem() -> str:
    """A certificate with an Authority Key Identifier (ARI's certificate id needs one)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.com")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=89))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


def test_the_client_picks_a_time_in_the_window_and_honours_retry_after(
    ari: AriStub, pebble: Pebble
) -> None:
    client = AcmeClient(f"{ari.url}/dir", new_account_key(), pebble.ca)
    pem = leaf_pem()
    now = datetime.now(UTC)
    start, end = now + timedelta(days=10), now + timedelta(days=11)
    ari.answer(start, end, retry_after="3600")
    when, next_check = client.renewal_time(pem)
    assert when is not None and start <= when <= end
    assert abs((next_check - now) - timedelta(hours=1)) < timedelta(minutes=1)
    assert len(ari.asked) == 1 and "." in ari.asked[0]  # base64url(AKI).base64url(serial)

    # A window already open: renew now; no Retry-After: ask again in 6 hours.
    ari.answer(now - timedelta(hours=1), now - timedelta(minutes=1))
    when, next_check = client.renewal_time(pem)
    assert when is not None and when <= datetime.now(UTC)
    assert abs((next_check - now) - timedelta(hours=6)) < timedelta(minutes=1)

    # The CA fails: no renewal time, and a later check.
    ari.status = 500
    when, next_check = client.renewal_time(pem)
    assert when is None and next_check > datetime.now(UTC)


async def test_the_renewal_tick_follows_the_cas_window(
    client: httpx.AsyncClient,
    admin: Caller,
    db: Database,
    vault: Vault,
    pebble: Pebble,
    acme_env: AcmeEnv,
    ari: AriStub,
) -> None:
    await setup_grid(client, admin, db, vault, pebble)
    await issue_legacy(client, admin, acme_env, pebble)
    async with db.session() as session:
        account = (await session.execute(select(AcmeAccount))).scalar_one()
        account.directory = f"{ari.url}/dir"  # the same CA, now offering ARI
        cert = (await session.execute(select(Certificate))).scalar_one()
        await session.commit()
    backstop, first_pem = cert.next_renewal_at, cert.cert_pem
    assert backstop is not None and cert.next_check_at is not None  # ARI asked at the next tick

    # A window after the backstop: no renewal yet, the plan moves into the window.
    now = datetime.now(UTC)
    start, end = now + timedelta(days=70), now + timedelta(days=71)
    ari.answer(start, end, retry_after="7200")
    acme_env.clock = lambda: now
    assert await renew_due(acme_env) == []
    async with db.session() as session:
        planned = (await session.execute(select(Certificate))).scalar_one()
    assert planned.next_renewal_at is not None and start <= planned.next_renewal_at <= end
    assert planned.next_check_at is not None
    assert abs((planned.next_check_at - now) - timedelta(hours=2)) < timedelta(minutes=1)
    assert planned.cert_pem == first_pem and planned.last_error is None

    # Not time to ask again yet: the CA is left alone.
    asked = len(ari.asked)
    acme_env.clock = lambda: now + timedelta(hours=1)
    assert await renew_due(acme_env) == []
    assert len(ari.asked) == asked

    # The CA opens the window now (say, a revocation ahead): renewed long before the backstop.
    ari.answer(now - timedelta(hours=1), now - timedelta(minutes=1))
    check = planned.next_check_at + timedelta(seconds=1)
    acme_env.clock = lambda: check
    assert await renew_due(acme_env) == [DOMAIN]
    async with db.session() as session:
        renewed = (await session.execute(select(Certificate))).scalar_one()
    assert renewed.cert_pem != first_pem and renewed.last_renewed_at == check
    assert len(ari.asked) == asked + 1
