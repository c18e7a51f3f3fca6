"""Let's Encrypt (ACME): per-grid accounts, domain authorizations, certificates and requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, TimestampMixin, utcnow
from models.work import WorkRowMixin


class AcmeAccount(ObjectIdMixin, WorkRowMixin, Base):
    """A grid's ACME account; the row is also the registration job (state = work state)."""

    __tablename__ = "acme_accounts"

    grid_id: Mapped[str] = mapped_column(
        ForeignKey("grids.id", ondelete="CASCADE"), unique=True, index=True
    )
    email: Mapped[str] = mapped_column(String(255))
    # Context ``acme-account:<grid id>``: the account's private JWK (JSON), vault ciphertext.
    key_encrypted: Mapped[str] = mapped_column(Text)
    account_url: Mapped[str | None] = mapped_column(String(1024))
    directory: Mapped[str] = mapped_column(String(1024))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DomainAuthorization(ObjectIdMixin, WorkRowMixin, Base):
    """A domain's authorization; ``state`` is the job's, ``authz_state`` Kontena's."""

    __tablename__ = "domain_authorizations"
    __table_args__ = (
        UniqueConstraint("grid_id", "domain", name="uq_domain_authorizations_grid_domain"),
    )

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(255))
    authorization_type: Mapped[str] = mapped_column(String(16), default="dns-01")
    # created | requested | validated | error (Kontena's states).
    authz_state: Mapped[str] = mapped_column(String(16), default="created")
    challenge: Mapped[dict[str, Any] | None] = mapped_column()
    challenge_opts: Mapped[dict[str, Any] | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    linked_service_id: Mapped[str | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), index=True
    )
    authz_url: Mapped[str | None] = mapped_column(String(1024))
    # http-01: the forced deploy of the linked service that delivers the challenge; no foreign
    # key (deploys are cleaned up), a missing row renders as no deploy.
    deploy_id: Mapped[str | None] = mapped_column(String(24))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Certificate(ObjectIdMixin, TimestampMixin, Base):
    """An issued certificate with its renewal plan; the private key is vault ciphertext."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("grid_id", "subject", name="uq_certificates_grid_subject"),)

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    alt_names: Mapped[list[str]] = mapped_column(default=list)
    valid_until: Mapped[datetime] = mapped_column()
    cert_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text)
    # Context ``certificate:<grid id>/<subject>``.
    key_encrypted: Mapped[str] = mapped_column(Text)
    # Legacy flow: the secrets <secret_name>_PRIVATE_KEY/_CERTIFICATE/_BUNDLE are rewritten
    # on every renewal; cert_type picks what _BUNDLE holds (cert | chain | fullchain).
    secret_name: Mapped[str | None] = mapped_column(String(255))
    cert_type: Mapped[str] = mapped_column(String(16), default="fullchain")
    # Renewal plan: when to renew, when to ask the CA's ARI again, the last failure.
    next_renewal_at: Mapped[datetime | None] = mapped_column(index=True)
    next_check_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    last_renewed_at: Mapped[datetime | None] = mapped_column()


class CertificateRequest(ObjectIdMixin, WorkRowMixin, Base):
    """A request to issue a certificate (the job); its result is a :class:`Certificate`."""

    __tablename__ = "certificate_requests"

    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), index=True)
    domains: Mapped[list[str]] = mapped_column()
    secret_name: Mapped[str | None] = mapped_column(String(255))
    cert_type: Mapped[str] = mapped_column(String(16), default="fullchain")
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL")
    )
