"""clusters, and the cluster each node is allocated to

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATES = ("creating", "ready", "scaling", "deleting", "failed")


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                  nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("gpu_model", sa.String(128), nullable=False),
        sa.Column("image", sa.String(128), nullable=False),
        sa.Column("network_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("networks.id", ondelete="SET NULL"), nullable=True),
        sa.Column("network_owned", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("storage_mounts", postgresql.JSONB(), server_default="[]", nullable=False),
        sa.Column("state", sa.String(16), server_default="creating", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_clusters_tenant_name"),
        sa.CheckConstraint("kind IN ('slurm', 'kubernetes')", name="ck_clusters_kind"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")",
                           name="ck_clusters_state"),
        sa.CheckConstraint("node_count >= 1", name="ck_clusters_node_count"),
    )  # fmt: skip
    op.add_column(
        "nodes",
        sa.Column("cluster_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("clusters.id", ondelete="RESTRICT"), nullable=True),
    )  # fmt: skip
    op.create_index("ix_nodes_cluster_id", "nodes", ["cluster_id"])


def downgrade() -> None:
    op.drop_index("ix_nodes_cluster_id", table_name="nodes")
    op.drop_column("nodes", "cluster_id")
    op.drop_table("clusters")
