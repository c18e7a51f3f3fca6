"""services

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:08:35.778827
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column("stack", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("stateful", sa.Boolean(), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("stack_revision", sa.Integer(), nullable=True),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("deploy_requested_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deployed_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grid_id"], ["grids.id"], name=op.f("fk_services_grid_id_grids"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("grid_id", "stack", "name", name="uq_services_path"),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_services_grid_id"), ["grid_id"], unique=False)

    op.create_table(
        "service_deploys",
        sa.Column("service_id", sa.String(length=24), nullable=False),
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column(
            "instance_deploys",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("queued_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("sent_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["grid_id"],
            ["grids.id"],
            name=op.f("fk_service_deploys_grid_id_grids"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_service_deploys_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_deploys")),
    )
    with op.batch_alter_table("service_deploys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_deploys_grid_id"), ["grid_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_service_deploys_service_id"), ["service_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_service_deploys_state"), ["state"], unique=False)

    op.create_table(
        "service_instances",
        sa.Column("service_id", sa.String(length=24), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=24), nullable=True),
        sa.Column("desired_state", sa.String(length=16), nullable=False),
        sa.Column("deploy_rev", sa.String(length=64), nullable=True),
        sa.Column("rev", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=2048), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_service_instances_node_id_nodes"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_service_instances_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_instances")),
        sa.UniqueConstraint("service_id", "instance_number", name="uq_service_instances_number"),
    )
    with op.batch_alter_table("service_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_instances_node_id"), ["node_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_service_instances_service_id"), ["service_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("service_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_instances_service_id"))
        batch_op.drop_index(batch_op.f("ix_service_instances_node_id"))

    op.drop_table("service_instances")
    with op.batch_alter_table("service_deploys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_deploys_state"))
        batch_op.drop_index(batch_op.f("ix_service_deploys_service_id"))
        batch_op.drop_index(batch_op.f("ix_service_deploys_grid_id"))

    op.drop_table("service_deploys")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_grid_id"))

    op.drop_table("services")
