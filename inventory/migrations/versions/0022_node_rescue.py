"""Rescue: nodes may be rescuing (RescueNode holds them) and in rescue (the tenant in the
rescue ramdisk)

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BEFORE = (
    "'available', 'provisioning', 'active', 'rebooting', 'cleaning', 'inspecting', 'failed',"
    " 'maintenance'"
)
AFTER = (
    "'available', 'provisioning', 'active', 'rebooting', 'cleaning', 'inspecting', 'rescuing',"
    " 'rescue', 'failed', 'maintenance'"
)


def upgrade() -> None:
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({AFTER})")


def downgrade() -> None:
    op.execute("UPDATE nodes SET state = 'failed' WHERE state IN ('rescuing', 'rescue')")
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({BEFORE})")
