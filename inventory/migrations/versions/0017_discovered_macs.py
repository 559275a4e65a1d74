"""MACs that network booted without belonging to a node: discovered nodes

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovered_macs",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column(
            "first_seen", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "last_seen", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("boots", sa.Integer(), server_default="1", nullable=False),
        sa.Column("last_address", sa.String(45)),
    )


def downgrade() -> None:
    op.drop_table("discovered_macs")
