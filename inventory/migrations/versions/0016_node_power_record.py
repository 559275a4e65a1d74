"""the platform's record of each node's power and of BMCs that stop answering

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("power_state", sa.String(8), nullable=True))
    op.add_column("nodes", sa.Column("power_checked_at", sa.DateTime(timezone=True)))
    op.add_column(
        "nodes", sa.Column("bmc_failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("nodes", sa.Column("bmc_unreachable_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    for column in ("bmc_unreachable_since", "bmc_failures", "power_checked_at", "power_state"):
        op.drop_column("nodes", column)
