"""isolation: event owners, tenant ids never reused, idempotency keys per tenant, our request ids

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _notify_function(owner: bool) -> str:
    """The events trigger's function (0005), with the owner in the payload or without."""
    owner_field = " 'owner', NEW.owner," if owner else ""
    return f"""
CREATE OR REPLACE FUNCTION notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        TG_TABLE_SCHEMA || '.events',
        json_build_object(
            'id', NEW.id, 'at', NEW.at, 'kind', NEW.kind, 'resource_id', NEW.resource_id,
            'tenant_id', NEW.tenant_id,{owner_field} 'from_state', NEW.from_state,
            'to_state', NEW.to_state, 'workflow_id', NEW.workflow_id,
            'reason', left(NEW.reason, 2000)
        )::text
    );
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    # Event streams filter by the rule GET applies, owner included.
    op.add_column("events", sa.Column("owner", sa.String(length=255), nullable=True))
    op.execute(_notify_function(owner=True))
    op.execute(
        "UPDATE events e SET owner = c.owner FROM clusters c"
        " WHERE e.kind = 'cluster' AND e.resource_id = c.id::text"
    )
    op.execute(
        "UPDATE events e SET owner = n.owner FROM networks n"
        " WHERE e.kind = 'network' AND e.resource_id = n.id::text"
    )
    # A deleted tenant stays as a tombstone: its id is never given to another tenant.
    op.drop_constraint("ck_tenants_state", "tenants", type_="check")
    op.create_check_constraint(
        "ck_tenants_state", "tenants", "state IN ('active', 'suspended', 'deleted')"
    )
    op.add_column("tenants", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    # Idempotency keys are scoped by tenant and subject ('' for platform principals).
    op.add_column(
        "idempotent_requests",
        sa.Column("tenant", sa.String(length=63), server_default="", nullable=False),
    )
    op.drop_constraint("idempotent_requests_pkey", "idempotent_requests", type_="primary")
    op.create_primary_key("idempotent_requests_pkey", "idempotent_requests",
                          ["tenant", "subject", "key"])  # fmt: skip
    # Our own request id is always recorded; the caller's, when sane, beside it.
    op.add_column("audit_log", sa.Column("client_request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "client_request_id")
    op.execute("DELETE FROM idempotent_requests")
    op.drop_constraint("idempotent_requests_pkey", "idempotent_requests", type_="primary")
    op.create_primary_key("idempotent_requests_pkey", "idempotent_requests", ["subject", "key"])
    op.drop_column("idempotent_requests", "tenant")
    op.execute("DELETE FROM tenants WHERE state = 'deleted'")
    op.drop_column("tenants", "deleted_at")
    op.drop_constraint("ck_tenants_state", "tenants", type_="check")
    op.create_check_constraint("ck_tenants_state", "tenants", "state IN ('active', 'suspended')")
    op.execute(_notify_function(owner=False))
    op.drop_column("events", "owner")
