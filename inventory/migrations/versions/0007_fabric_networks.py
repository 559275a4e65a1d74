"""fabric and tenant networks: switches, NIC links, IB ports, networks, pool allocations,
attachments

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "switches",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("nos", sa.String(16), nullable=False),
        sa.Column("mgmt_address", sa.String(255), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("password", sa.String(256), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=False),
        sa.Column("vtep_address", sa.String(45), nullable=True),
        sa.Column("routing", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _created_at(),
        sa.CheckConstraint("role IN ('leaf', 'spine')", name="ck_switches_role"),
    )
    op.create_table(
        "nic_links",
        sa.Column("mac", sa.String(17), sa.ForeignKey("nics.mac", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("switch_id", sa.String(63), sa.ForeignKey("switches.id", ondelete="RESTRICT"),
                  nullable=False),
        sa.Column("port", sa.String(64), nullable=False),
        sa.UniqueConstraint("switch_id", "port", name="uq_nic_links_switch_port"),
    )  # fmt: skip
    op.create_table(
        "ib_ports",
        sa.Column("guid", sa.String(18), primary_key=True),
        sa.Column("node_id", sa.String(63), sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("subnet", sa.String(63), server_default="default", nullable=False),
    )  # fmt: skip
    op.create_table(
        "networks",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.String(16), server_default="tenant", nullable=False),
        sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                  nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("cidr", postgresql.CIDR(), nullable=False),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("l2vni", sa.Integer(), nullable=False),
        sa.Column("vrf_table", sa.Integer(), nullable=True),
        sa.Column("l3vni", sa.Integer(), nullable=True),
        sa.Column("l3vlan", sa.Integer(), nullable=True),
        sa.Column("pkey", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), server_default="creating", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("kind IN ('tenant', 'provisioning')", name="ck_networks_kind"),
        sa.CheckConstraint("state IN ('creating', 'ready', 'deleting', 'failed')",
                           name="ck_networks_state"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_networks_tenant_name"),
    )  # fmt: skip
    op.create_index("uq_networks_one_provisioning", "networks", ["kind"], unique=True,
                    postgresql_where=sa.text("kind = 'provisioning'"))  # fmt: skip
    op.create_table(
        "allocations",
        sa.Column("pool", sa.String(16), primary_key=True),
        sa.Column("scope", sa.String(63), primary_key=True),
        sa.Column("value", sa.BigInteger(), primary_key=True),
        sa.Column("purpose", sa.String(8), server_default="", nullable=False),
        sa.Column("network_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("networks.id", ondelete="CASCADE"), nullable=False, index=True),
    )  # fmt: skip
    op.create_table(
        "attachments",
        sa.Column("node_id", sa.String(63), sa.ForeignKey("nodes.id", ondelete="RESTRICT"),
                  primary_key=True),
        sa.Column("network_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("networks.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("state", sa.String(16), server_default="attaching", nullable=False),
        _created_at(),
    )  # fmt: skip


def downgrade() -> None:
    for table in ("attachments", "allocations", "networks", "ib_ports", "nic_links", "switches"):
        op.drop_table(table)
