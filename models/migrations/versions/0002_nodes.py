"""nodes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:32:37.638246
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=True),
        sa.Column("node_number", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_encrypted", sa.String(length=1024), nullable=True),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("availability", sa.String(length=16), nullable=False),
        sa.Column("os", sa.String(length=255), nullable=True),
        sa.Column("engine_root_dir", sa.String(length=1024), nullable=True),
        sa.Column("driver", sa.String(length=64), nullable=True),
        sa.Column("kernel_version", sa.String(length=255), nullable=True),
        sa.Column("mem_total", sa.BigInteger(), nullable=True),
        sa.Column("mem_limit", sa.BigInteger(), nullable=True),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("public_ip", sa.String(length=64), nullable=True),
        sa.Column("private_ip", sa.String(length=64), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("docker_version", sa.String(length=64), nullable=True),
        sa.Column(
            "network_drivers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "volume_drivers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("updated", sa.Boolean(), nullable=False),
        sa.Column("connected_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("connection_holder", sa.String(length=128), nullable=True),
        sa.Column(
            "websocket_connection",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "latest_stats",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grid_id"], ["grids.id"], name=op.f("fk_nodes_grid_id_grids"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("grid_id", "name", name="uq_nodes_grid_id_name"),
        sa.UniqueConstraint("grid_id", "node_number", name="uq_nodes_grid_id_node_number"),
        sa.UniqueConstraint("node_id", name=op.f("uq_nodes_node_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_nodes_token_hash")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_grid_id"), ["grid_id"], unique=False)

    op.create_table(
        "node_stats",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("node_id", sa.String(length=24), nullable=False),
        sa.Column("grid_id", sa.String(length=24), nullable=False),
        sa.Column(
            "memory",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "load",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "filesystem",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "cpu",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "network",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "usage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grid_id"], ["grids.id"], name=op.f("fk_node_stats_grid_id_grids"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_stats_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_stats")),
    )
    with op.batch_alter_table("node_stats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_stats_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_stats_grid_id"), ["grid_id"], unique=False)
        batch_op.create_index("ix_node_stats_node_created", ["node_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_stats", schema=None) as batch_op:
        batch_op.drop_index("ix_node_stats_node_created")
        batch_op.drop_index(batch_op.f("ix_node_stats_grid_id"))
        batch_op.drop_index(batch_op.f("ix_node_stats_created_at"))

    op.drop_table("node_stats")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_grid_id"))

    op.drop_table("nodes")
