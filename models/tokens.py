"""OAuth2 access tokens, refresh tokens and authorization codes (all stored as hashes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, ObjectIdMixin, TimestampMixin
from models.users import User


class AccessToken(ObjectIdMixin, TimestampMixin, Base):
    """A bearer token, or a pending authorization code that becomes one when exchanged."""

    __tablename__ = "access_tokens"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_type: Mapped[str] = mapped_column(String(32), default="bearer")
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_last_four: Mapped[str | None] = mapped_column(String(4))
    refresh_token_last_four: Mapped[str | None] = mapped_column(String(4))
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(String(255))
    internal: Mapped[bool] = mapped_column(default=True)

    user: Mapped[User] = relationship(lazy="joined")
