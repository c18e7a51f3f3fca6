"""authorization requests (external login)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authorization_requests",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("invite_code", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=24), nullable=True),
        sa.Column("expires_in", sa.Integer(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_authorization_requests_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_requests")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_authorization_requests_state_hash")),
    )
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorization_requests_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorization_requests_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_requests_user_id"))
        batch_op.drop_index(batch_op.f("ix_authorization_requests_expires_at"))
    op.drop_table("authorization_requests")
