"""tenants with quotas; nodes.tenant_id references them

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("quota_gpus", sa.Integer(), server_default="0", nullable=False),
        sa.Column("quota_nodes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("quota_storage_gib", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("state IN ('active', 'suspended')", name="ck_tenants_state"),
        sa.CheckConstraint(
            "quota_gpus >= 0 AND quota_nodes >= 0 AND quota_storage_gib >= 0",
            name="ck_tenants_quotas",
        ),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_foreign_key(
        "fk_nodes_tenant_id", "nodes", "tenants", ["tenant_id"], ["id"], ondelete="RESTRICT"
    )


def downgrade() -> None:
    op.drop_constraint("fk_nodes_tenant_id", "nodes", type_="foreignkey")
    op.drop_table("tenants")
