"""nodes may be rebooting (RebootNode holds them)

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BEFORE = "'available', 'provisioning', 'active', 'cleaning', 'failed', 'maintenance'"
AFTER = "'available', 'provisioning', 'active', 'rebooting', 'cleaning', 'failed', 'maintenance'"


def upgrade() -> None:
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({AFTER})")


def downgrade() -> None:
    op.execute("UPDATE nodes SET state = 'active' WHERE state = 'rebooting'")
    op.drop_constraint("ck_nodes_state", "nodes", type_="check")
    op.create_check_constraint("ck_nodes_state", "nodes", f"state IN ({BEFORE})")
