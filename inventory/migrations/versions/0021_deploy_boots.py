"""Direct deploy: a boot session of the agent's task `deploy` names the image it writes to
the node's disk

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("boot_sessions", sa.Column("deploy_image", sa.String(128)))


def downgrade() -> None:
    op.drop_column("boot_sessions", "deploy_image")
