"""A small synchronous wrapper around the ``acme`` library (RFC 8555), for workers only.

The library is blocking (requests): callers run every method through ``asyncio.to_thread``,
never on an event loop. ``badNonce`` answers are retried (Pebble rejects 5 % of nonces, Let's
Encrypt some); rate limits become :class:`RateLimited` carrying the server's Retry-After.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256, RS256
from josepy.jwk import JWK, JWKEC

T = TypeVar("T")
NONCE_RETRIES = 5
USER_AGENT = "kontena-master-py"
TIMEOUT = 30


class AcmeError(Exception):
    """An ACME operation failed; the message is fit for ``reason``/``last_error``."""


class RateLimited(AcmeError):
    """The CA answered ``rateLimited`` (or 503); try again after ``retry_after``."""

    def __init__(self, message: str, retry_after: dt.datetime | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    now = dt.datetime.now(dt.UTC)
    if value.strip().isdigit():
        return now + dt.timedelta(seconds=int(value))
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(dt.UTC)
    except (TypeError, ValueError):
        return None


class _Network(client.ClientNetwork):  # type: ignore[misc]
    """ClientNetwork that keeps the Retry-After of a rate-limit answer."""

    @classmethod
    def _check_response(
        cls, response: requests.Response, content_type: str | None = None
    ) -> requests.Response:
        try:
            result: requests.Response = super()._check_response(response, content_type)
        except messages.Error as error:
            if error.code == "rateLimited" or response.status_code == 503:
                raise RateLimited(
                    f"rate limited by the ACME server: {error.detail or error}",
                    _parse_retry_after(response.headers.get("Retry-After")),
                ) from error
            raise
        return result


def new_account_key() -> str:
    """A fresh account key (EC P-256) as private JWK JSON."""
    key = ec.generate_private_key(ec.SECP256R1())
    return str(JWKEC(key=key).json_dumps())


def new_private_key_pem() -> str:
    """A fresh certificate private key (EC P-256), PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def make_csr(key_pem: str, domains: list[str]) -> bytes:
    """A CSR for ``domains`` (the first is the subject), signed by ``key_pem``."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class DnsChallenge:
    """A dns-01 challenge of an authorization and the TXT record that answers it."""

    authz_url: str
    challenge_url: str
    token: str
    record_name: str
    record_content: str
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class HttpChallenge:
    """An http-01 challenge: the token and the key authorization served at its URL."""

    authz_url: str
    challenge_url: str
    token: str
    key_authorization: str
    expires_at: dt.datetime | None


CHALLENGE_TYPES: dict[str, type[challenges.Challenge]] = {
    "dns-01": challenges.DNS01,
    "http-01": challenges.HTTP01,
}


class AcmeClient:
    """One account's view of one ACME directory (blocking calls)."""

    def __init__(
        self, directory_url: str, key_json: str, ca_bundle: str = "", account_url: str | None = None
    ) -> None:
        self.key = JWK.json_loads(key_json)
        alg = ES256 if isinstance(self.key, JWKEC) else RS256
        self.net = _Network(
            self.key,
            alg=alg,
            # requests takes a CA file path where the library types a bool.
            verify_ssl=cast(Any, ca_bundle or True),
            user_agent=USER_AGENT,
            timeout=TIMEOUT,
        )
        directory = self._retry(lambda: client.ClientV2.get_directory(directory_url, self.net))
        self.acme = client.ClientV2(directory, self.net)
        if account_url:
            self.net.account = messages.RegistrationResource(
                uri=account_url, body=messages.Registration()
            )

    def _retry(self, call: Callable[[], T]) -> T:
        """Run ``call``, again on badNonce; library errors become :class:`AcmeError`."""
        for attempt in range(NONCE_RETRIES):
            try:
                return call()
            except RateLimited:
                raise
            except messages.Error as error:
                if error.code == "badNonce" and attempt < NONCE_RETRIES - 1:
                    time.sleep(0.05)
                    continue
                raise AcmeError(f"ACME error: {error.detail or error.code or error}") from error
            except errors.Error as error:
                raise AcmeError(f"ACME client error: {error}") from error
            except (requests.RequestException, OSError) as error:
                # OSError: requests' own, e.g. a CA bundle path that does not exist.
                raise AcmeError(f"ACME server unreachable: {error}") from error
        raise AssertionError("unreachable")

    def register(self, email: str) -> str:
        """Create (or find) the account, agreeing to the terms; returns its URL."""
        reg = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
        try:
            regr = self._retry(lambda: self.acme.new_account(reg))
        except AcmeError as error:
            if isinstance(error.__cause__, errors.ConflictError):
                # The key is known already: the Location names the existing account.
                url = str(error.__cause__.location)
                self.net.account = messages.RegistrationResource(
                    uri=url, body=messages.Registration()
                )
                return url
            raise
        self.net.account = regr
        return str(regr.uri)

    def _new_order(self, domains: list[str], key_pem: str | None = None) -> Any:
        csr = make_csr(key_pem or new_private_key_pem(), domains)
        return self._retry(lambda: self.acme.new_order(csr))

    def dns_challenge(self, domain: str) -> DnsChallenge:
        """Start an order for ``domain`` and return its dns-01 challenge."""
        order = self._new_order([domain])
        authzr = order.authorizations[0]
        for challb in authzr.body.challenges:
            if isinstance(challb.chall, challenges.DNS01):
                return DnsChallenge(
                    authz_url=str(authzr.uri),
                    challenge_url=str(challb.uri),
                    token=challb.chall.encode("token"),
                    record_name=challb.chall.validation_domain_name(domain),
                    record_content=challb.chall.validation(self.key),
                    expires_at=authzr.body.expires,
                )
        raise AcmeError("LE did not offer any dns-01 challenge")

    def http_challenge(self, domain: str) -> HttpChallenge:
        """Start an order for ``domain`` and return its http-01 challenge."""
        order = self._new_order([domain])
        authzr = order.authorizations[0]
        for challb in authzr.body.challenges:
            if isinstance(challb.chall, challenges.HTTP01):
                return HttpChallenge(
                    authz_url=str(authzr.uri),
                    challenge_url=str(challb.uri),
                    token=challb.chall.encode("token"),
                    key_authorization=challb.chall.validation(self.key),
                    expires_at=authzr.body.expires,
                )
        raise AcmeError("LE did not offer any http-01 challenge")

    def authz_status(self, authz_url: str) -> str:
        """The CA's status of an authorization (``valid``, ``pending``, ``expired``…)."""
        return str(self._authz(authz_url).body.status.name)

    def validate(
        self, authz_url: str, deadline: float, kind: str = "dns-01"
    ) -> tuple[str, str | None]:
        """Answer the authorization's ``kind`` challenge if pending; wait for valid/invalid.

        Returns (status, error detail).
        """
        wanted = CHALLENGE_TYPES[kind]
        authzr = self._authz(authz_url)
        if authzr.body.status == messages.STATUS_PENDING:
            for challb in authzr.body.challenges:
                if isinstance(challb.chall, wanted):
                    self._answer(challb)
                    break
        while authzr.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
            if time.monotonic() > deadline:
                return "timeout", "Challenge verification timeout"
            time.sleep(0.25)
            authzr = self._authz(authz_url)
        detail = None
        for challb in authzr.body.challenges:
            if challb.error is not None:
                detail = str(challb.error.detail or challb.error)
        return str(authzr.body.status.name), detail

    def _answer(self, challb: Any) -> None:
        response = challb.chall.response(self.key)
        self._retry(lambda: self.acme.answer_challenge(challb, response))

    def _authz(self, url: str) -> Any:
        resource = messages.AuthorizationResource(uri=url, body=messages.Authorization())
        authzr, _ = self._retry(lambda: self.acme.poll(resource))
        return authzr

    def issue(self, domains: list[str], key_pem: str, timeout: float = 60.0) -> str:
        """Order, finalize and download a certificate; every authorization must be valid."""
        order = self._new_order(domains, key_pem)
        for authzr in order.authorizations:
            if authzr.body.status != messages.STATUS_VALID:
                name = authzr.body.identifier.value
                raise AcmeError(f"Domain {name} is not authorized (authorization expired?)")
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        done = self._retry(lambda: self.acme.finalize_order(order, deadline))
        return str(done.fullchain_pem)

    def renewal_time(self, cert_pem: str) -> tuple[dt.datetime | None, dt.datetime]:
        """ARI's suggested renewal time (None when the CA offers no ARI) and the next check."""
        try:
            when, next_check = self.acme.renewal_time(cert_pem.encode())
        except errors.ARIError as error:
            return None, _aware(error.retry_after)
        return (_aware(when) if when is not None else None), _aware(next_check)


def _aware(value: dt.datetime) -> dt.datetime:
    # The library mixes naive local times and aware UTC times.
    return value.astimezone(dt.UTC) if value.tzinfo else value.astimezone().astimezone(dt.UTC)
