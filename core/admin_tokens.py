"""``kontena-master token create``: a token for the local admin, straight from the database."""

from __future__ import annotations

from core.access_tokens import IssuedToken, issue_token
from core.bootstrap import ensure_local_admin
from models.db import Database


async def create_admin_token(db: Database, expires_in: int, description: str) -> IssuedToken:
    """Ensure the local admin exists and give it a new token (``expires_in`` 0 = never)."""
    async with db.session() as session:
        admin, _ = await ensure_local_admin(session)
        issued = issue_token(
            session,
            admin,
            expires_in=expires_in,
            scopes=["user", "owner"],
            description=description or None,
        )
        await session.commit()
        return issued
