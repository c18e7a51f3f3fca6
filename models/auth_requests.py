"""Pending external logins: one row per browser sent to the authentication provider."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, ObjectIdMixin, utcnow


class AuthorizationRequest(ObjectIdMixin, Base):
    """A login started at ``/authenticate``, completed (once) at ``/cb`` before ``expires_at``.

    Only the hash of the ``state`` handed to the provider is kept, like every other secret.
    """

    __tablename__ = "authorization_requests"

    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    invite_code: Mapped[str | None] = mapped_column(String(64))
    # The invited (or re-authenticating) user known when the login started.
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Lifetime in seconds of the master token the login yields; None never expires.
    expires_in: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
