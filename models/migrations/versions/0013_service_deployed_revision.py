"""service deployed_revision (continuous rescheduling)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deployed_revision", sa.Integer(), nullable=True))
    # Services deployed before this column existed count as up to date, not as lagging.
    op.execute("UPDATE services SET deployed_revision = revision WHERE deployed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_column("deployed_revision")
