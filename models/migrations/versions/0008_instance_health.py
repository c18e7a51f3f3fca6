"""service instance health

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("service_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_status", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("health_status_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("health_error", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("service_instances", schema=None) as batch_op:
        batch_op.drop_column("health_error")
        batch_op.drop_column("health_status_at")
        batch_op.drop_column("health_status")
