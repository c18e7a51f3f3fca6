"""acme: the forced deploy that delivers an http-01 challenge

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No foreign key: the deploy row may be cleaned up; a missing one renders as no deploy.
    op.add_column(
        "domain_authorizations", sa.Column("deploy_id", sa.String(length=24), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("domain_authorizations") as batch:
        batch.drop_column("deploy_id")
