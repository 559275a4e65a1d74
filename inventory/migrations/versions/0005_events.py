"""events: one stream of state changes for every resource kind, pushed with NOTIFY

The node-only `node_events` table becomes `events` (history kept). A trigger announces each new
row on the channel "<schema>.events", so API replicas push it to subscribers at commit, in
commit order, without polling.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The payload is the row itself (reason cut short: NOTIFY payloads are limited to 8000 bytes).
NOTIFY_FUNCTION = """
CREATE FUNCTION notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        TG_TABLE_SCHEMA || '.events',
        json_build_object(
            'id', NEW.id, 'at', NEW.at, 'kind', NEW.kind, 'resource_id', NEW.resource_id,
            'tenant_id', NEW.tenant_id, 'from_state', NEW.from_state, 'to_state', NEW.to_state,
            'workflow_id', NEW.workflow_id, 'reason', left(NEW.reason, 2000)
        )::text
    );
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_resource", "events", ["kind", "resource_id", "id"])
    op.execute(
        "INSERT INTO events (at, kind, resource_id, tenant_id, from_state, to_state,"
        " workflow_id, reason)"
        " SELECT e.at, 'node', e.node_id, n.tenant_id, e.from_state, e.to_state, e.workflow_id,"
        " e.reason FROM node_events e JOIN nodes n ON n.id = e.node_id ORDER BY e.id"
    )
    op.drop_table("node_events")
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events"
        " FOR EACH ROW EXECUTE FUNCTION notify_event()"
    )


def downgrade() -> None:
    op.create_table(
        "node_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_node_events_node_id", "node_events", ["node_id"])
    op.execute(
        "INSERT INTO node_events (node_id, at, from_state, to_state, workflow_id, reason)"
        " SELECT resource_id, at, from_state, to_state, workflow_id, reason FROM events e"
        " WHERE kind = 'node' AND EXISTS (SELECT 1 FROM nodes WHERE id = e.resource_id)"
        " ORDER BY id"
    )
    op.execute("DROP TRIGGER events_notify ON events")
    op.execute("DROP FUNCTION notify_event()")
    op.drop_table("events")
