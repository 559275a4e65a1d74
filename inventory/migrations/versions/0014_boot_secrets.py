"""the boot service hands each boot's token and cluster secrets out once, the CA key once

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The last boot whose user-data (its token) and cluster secrets were handed out.
    op.add_column("boot_sessions", sa.Column("user_data_boot", sa.Integer(), nullable=True))
    op.add_column("boot_sessions", sa.Column("secrets_boot", sa.Integer(), nullable=True))
    # The controller node the Kubernetes CA key went to.
    op.add_column("clusters", sa.Column("ca_key_holder", sa.String(length=63), nullable=True))


def downgrade() -> None:
    op.drop_column("clusters", "ca_key_holder")
    op.drop_column("boot_sessions", "secrets_boot")
    op.drop_column("boot_sessions", "user_data_boot")
