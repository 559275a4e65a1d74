"""a Kubernetes cluster's CA and bootstrap token

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clusters", sa.Column("ca_cert", sa.Text(), nullable=True))
    op.add_column("clusters", sa.Column("ca_key", sa.LargeBinary(), nullable=True))
    op.add_column("clusters", sa.Column("join_token", sa.Text(), nullable=True))


def downgrade() -> None:
    for column in ("join_token", "ca_key", "ca_cert"):
        op.drop_column("clusters", column)
