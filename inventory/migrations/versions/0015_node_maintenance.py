"""an operator's reason for a node in maintenance

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("maintenance_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "maintenance_reason")
