"""Cleaning between tenants: a node's agent image and whether it holds a tenant's data; a boot
session's task (clean: the agent boots to wipe the node, not to run an image)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("agent_image", sa.String(128)))
    op.add_column(
        "nodes",
        sa.Column("needs_cleaning", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("boot_sessions", sa.Column("task", sa.String(16)))


def downgrade() -> None:
    op.drop_column("boot_sessions", "task")
    op.drop_column("nodes", "needs_cleaning")
    op.drop_column("nodes", "agent_image")
