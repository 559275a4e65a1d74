"""boot sessions count their boots (a token per boot) and may stay open (stateless images)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "boot_sessions", sa.Column("boots", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "boot_sessions", sa.Column("boot_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("boot_sessions", sa.Column("phoned_home_boot", sa.Integer(), nullable=True))
    op.add_column("boot_sessions", sa.Column("checked_boot", sa.Integer(), nullable=True))
    op.alter_column("boot_sessions", "expires_at", nullable=True)


def downgrade() -> None:
    op.execute("UPDATE boot_sessions SET expires_at = now() WHERE expires_at IS NULL")
    op.alter_column("boot_sessions", "expires_at", nullable=False)
    for column in ("checked_boot", "phoned_home_boot", "boot_started_at", "boots"):
        op.drop_column("boot_sessions", column)
