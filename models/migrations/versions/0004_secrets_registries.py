"""grid secrets and external registries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_secrets",
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value_encrypted", sa.Text(), nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grid_id"],
            ["grids.id"],
            name=op.f("fk_grid_secrets_grid_id_grids"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_secrets")),
        sa.UniqueConstraint("grid_id", "name", name="uq_grid_secrets_grid_id_name"),
    )
    with op.batch_alter_table("grid_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grid_secrets_grid_id"), ["grid_id"], unique=False)

    op.create_table(
        "registries",
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grid_id"],
            ["grids.id"],
            name=op.f("fk_registries_grid_id_grids"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("grid_id", "name", name="uq_registries_grid_id_name"),
    )
    with op.batch_alter_table("registries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registries_grid_id"), ["grid_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registries_grid_id"))
    op.drop_table("registries")
    with op.batch_alter_table("grid_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_secrets_grid_id"))
    op.drop_table("grid_secrets")
