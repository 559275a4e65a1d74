"""cluster members (role, hostname, tenant address) and what the head node reports

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_members",
        sa.Column("node_id", sa.String(63), sa.ForeignKey("nodes.id", ondelete="RESTRICT"),
                  primary_key=True),
        sa.Column("cluster_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("clusters.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("network_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("networks.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("hostname", sa.String(63), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("address", postgresql.INET(), nullable=False),
        sa.Column("state", sa.String(16), server_default="joining", nullable=False),
        sa.Column("replaces", sa.String(63), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint("cluster_id", "hostname", name="uq_cluster_members_hostname"),
        sa.UniqueConstraint("network_id", "address", name="uq_cluster_members_address"),
        sa.CheckConstraint("role IN ('controller', 'compute')", name="ck_cluster_members_role"),
        sa.CheckConstraint("state IN ('joining', 'member', 'removing')",
                           name="ck_cluster_members_state"),
    )  # fmt: skip
    op.create_index("ix_cluster_members_cluster_id", "cluster_members", ["cluster_id"])
    op.add_column("clusters", sa.Column("munge_key", sa.LargeBinary(), nullable=True))
    op.add_column(
        "clusters",
        sa.Column("verify_generation", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("clusters", sa.Column("report", postgresql.JSONB(), nullable=True))
    op.add_column("clusters", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("reported_at", "report", "verify_generation", "munge_key"):
        op.drop_column("clusters", column)
    op.drop_index("ix_cluster_members_cluster_id", table_name="cluster_members")
    op.drop_table("cluster_members")
