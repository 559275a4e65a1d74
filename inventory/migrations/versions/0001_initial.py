"""initial inventory: nodes, nics, boot sessions, node events

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("vendor", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("gpu_vendor", sa.String(length=64), nullable=True),
        sa.Column("gpu_model", sa.String(length=128), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("bmc_protocol", sa.String(length=16), nullable=False),
        sa.Column("bmc_address", sa.String(length=512), nullable=False),
        sa.Column("bmc_username", sa.String(length=128), nullable=False),
        sa.Column("bmc_password", sa.String(length=256), nullable=False),
        sa.Column("bmc_redfish_address", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("operation", sa.String(length=32), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("image", sa.String(length=128), nullable=True),
        sa.Column(
            "extra_kernel_args",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column(
            "labels", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("facts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("bmc_protocol IN ('ipmi', 'redfish')", name="ck_nodes_bmc_protocol"),
        sa.CheckConstraint(
            "state IN ('available', 'provisioning', 'active', 'cleaning', 'failed', 'maintenance')",
            name="ck_nodes_state",
        ),
        sa.CheckConstraint("gpu_count >= 0", name="ck_nodes_gpu_count"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_nodes_state", "nodes", ["state"], unique=False)
    op.create_table(
        "boot_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("image", sa.String(length=128), nullable=False),
        sa.Column("kernel_args", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("kernel_sha256", sa.String(length=64), nullable=True),
        sa.Column("initrd_sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_boot_sessions_open_per_node",
        "boot_sessions",
        ["node_id"],
        unique=True,
        postgresql_where=sa.text("closed_at IS NULL"),
    )
    op.create_table(
        "nics",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mac"),
    )
    op.create_index(op.f("ix_nics_node_id"), "nics", ["node_id"], unique=False)
    op.create_table(
        "node_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_node_events_node_id"), "node_events", ["node_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_node_events_node_id"), table_name="node_events")
    op.drop_table("node_events")
    op.drop_index(op.f("ix_nics_node_id"), table_name="nics")
    op.drop_table("nics")
    op.drop_index(
        "uq_boot_sessions_open_per_node",
        table_name="boot_sessions",
        postgresql_where=sa.text("closed_at IS NULL"),
    )
    op.drop_table("boot_sessions")
    op.drop_index("ix_nodes_state", table_name="nodes")
    op.drop_table("nodes")
