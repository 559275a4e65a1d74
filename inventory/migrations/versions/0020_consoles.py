"""Serial consoles: a node's console address (for a console server's port or a lab VM's
socket; IPMI nodes use Serial-over-LAN without one) and the console output kept per boot
session

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("console_address", sa.String(512)))
    op.create_table(
        "console_logs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "node_id", sa.String(63), sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "boot_session_id",
            UUID(as_uuid=True),
            sa.ForeignKey("boot_sessions.id", ondelete="SET NULL"),
        ),
        sa.Column("image", sa.String(128)),
        sa.Column("task", sa.String(16)),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("bytes_seen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output", sa.LargeBinary, nullable=False, server_default=sa.text("''::bytea")),
    )
    op.create_index("ix_console_logs_node", "console_logs", ["node_id", "started_at"])
    op.create_index(
        "uq_console_logs_session",
        "console_logs",
        ["boot_session_id"],
        unique=True,
        postgresql_where=sa.text("boot_session_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("console_logs")
    op.drop_column("nodes", "console_address")
