"""Commissioning: nodes may be inspecting (CommissionNode holds them); a node's SKU and the
hardware record its inspection found

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BEFORE = "'available', 'provisioning', 'active', 'rebooting', 'cleaning', 'failed', 'maintenance'"
AFTER = (
    "'available', 'provisioning', 'active', 'rebooting', 'cleaning', 'inspecting', 'failed',"
    " 'maintenance'"
)


def upgrade() -> None:
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({AFTER})")
    op.add_column("nodes", sa.Column("sku", sa.String(128)))
    op.add_column("nodes", sa.Column("hardware", JSONB()))


def downgrade() -> None:
    op.drop_column("nodes", "hardware")
    op.drop_column("nodes", "sku")
    op.execute("UPDATE nodes SET state = 'maintenance' WHERE state = 'inspecting'")
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({BEFORE})")
