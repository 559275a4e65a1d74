"""ORM models of the inventory (SQLAlchemy 2.0 declarative, typed)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, INET, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from inventory.states import NodeState

NODE_STATES_SQL = ", ".join(f"'{s.value}'" for s in NodeState)


class Base(DeclarativeBase):
    pass


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        CheckConstraint(f"state IN ({NODE_STATES_SQL})", name="ck_nodes_state"),
        CheckConstraint("bmc_protocol IN ('ipmi', 'redfish')", name="ck_nodes_bmc_protocol"),
        CheckConstraint("gpu_count >= 0", name="ck_nodes_gpu_count"),
        Index("ix_nodes_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    gpu_vendor: Mapped[str | None] = mapped_column(String(64))
    gpu_model: Mapped[str | None] = mapped_column(String(128))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)

    bmc_protocol: Mapped[str] = mapped_column(String(16))
    bmc_address: Mapped[str] = mapped_column(String(512))
    bmc_username: Mapped[str] = mapped_column(String(128))
    bmc_password: Mapped[str] = mapped_column(String(256))
    bmc_redfish_address: Mapped[str | None] = mapped_column(String(512))
    # A console server's port or a lab VM's socket; None: Serial-over-LAN on an IPMI BMC.
    console_address: Mapped[str | None] = mapped_column(String(512))

    state: Mapped[str] = mapped_column(String(32), default=NodeState.AVAILABLE.value)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Why an operator took the node out of service (`maintenance`); None otherwise.
    maintenance_reason: Mapped[str | None] = mapped_column(Text)
    # The platform's record of the node's power ("on", "off"; None: never read), kept by the
    # power activities and the power-state sync (inventory/power.py).
    power_state: Mapped[str | None] = mapped_column(String(8))
    power_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    bmc_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row
    bmc_unreachable_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    operation: Mapped[str | None] = mapped_column(String(32))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    image: Mapped[str | None] = mapped_column(String(128))
    # The ramdisk its cleaning boots (settings.agent_image when None), as Ironic's deploy ramdisk.
    agent_image: Mapped[str | None] = mapped_column(String(128))
    # A tenant's data may be on its disks: set by a provision, cleared by a verified clean only.
    needs_cleaning: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sku: Mapped[str | None] = mapped_column(String(128))  # its hardware class (inventory/skus)
    hardware: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # what inspection found
    extra_kernel_args: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default=text("'{}'")
    )
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT")  # a tenant holding nodes stays
    )
    # The cluster the node is allocated to (its tenant's); None: in the free pool.
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clusters.id", ondelete="RESTRICT"), index=True
    )
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    nics: Mapped[list[Nic]] = relationship(
        back_populates="node",
        cascade="all, delete-orphan",
        order_by="Nic.position",
        lazy="raise",  # load explicitly (nodes.find, nodes.list_nodes) where NICs are shown
    )

    def __repr__(self) -> str:  # never show BMC credentials
        return f"Node(id={self.id!r}, state={self.state!r})"


class Nic(Base):
    __tablename__ = "nics"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    node: Mapped[Node] = relationship(back_populates="nics")


class DiscoveredMac(Base):
    """A MAC that network booted without belonging to a node: a server an operator may enroll
    (inventory/discovery.py). Never booted by the platform."""

    __tablename__ = "discovered_macs"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    boots: Mapped[int] = mapped_column(Integer, server_default="1")
    last_address: Mapped[str | None] = mapped_column(String(45))  # whence it asked


class BootSession(Base):
    """The network boots of one node for one provisioning. Each boot's phone-home token is
    derived from the id and boot number (HMAC), so no secret is stored here nor put in workflow
    history."""

    __tablename__ = "boot_sessions"
    __table_args__ = (
        # At most one open boot session per node.
        Index(
            "uq_boot_sessions_open_per_node",
            "node_id",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(String(128))
    task: Mapped[str | None] = mapped_column(String(16))  # "clean": the agent's; None: the image's
    deploy_image: Mapped[str | None] = mapped_column(String(128))  # task "deploy": what it writes
    kernel_args: Mapped[list[str]] = mapped_column(ARRAY(Text))
    kernel_sha256: Mapped[str | None] = mapped_column(String(64))
    initrd_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: stateless
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last phone-home
    boots: Mapped[int] = mapped_column(Integer, server_default="0")  # boot starts (POSTs)
    boot_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    phoned_home_boot: Mapped[int | None] = mapped_column(Integer)
    checked_boot: Mapped[int | None] = mapped_column(Integer)  # last boot checked after activation
    # The last boot whose user-data (with its token) and cluster secrets were handed out: each
    # once per boot (docs/boot-threat-model.md).
    user_data_boot: Mapped[int | None] = mapped_column(Integer)
    secrets_boot: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsoleLog(Base):
    """A node's serial console output during one boot session (one operation's boots), as the
    console relay captured it; only the newest bytes are kept past the size limit."""

    __tablename__ = "console_logs"
    __table_args__ = (
        Index("ix_console_logs_node", "node_id", "started_at"),
        Index(
            "uq_console_logs_session",
            "boot_session_id",
            unique=True,
            postgresql_where=text("boot_session_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    boot_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("boot_sessions.id", ondelete="SET NULL")
    )
    image: Mapped[str | None] = mapped_column(String(128))
    task: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    bytes_seen: Mapped[int] = mapped_column(BigInteger, server_default="0")
    output: Mapped[bytes] = mapped_column(LargeBinary, server_default=text("''::bytea"))


class Event(Base):
    """A state change of any resource (node, tenant, ...), with the operation and reason that
    caused it. A trigger (migration 0005) announces each row to the API's event streams."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(String(63))
    owner: Mapped[str | None] = mapped_column(String(255))  # the subject the resource belongs to
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_events_resource", "kind", "resource_id", "id"),)


class AuditEntry(Base):
    """One authorization decision: who asked to do what to which resource, and the answer."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    subject: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(63))
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    action: Mapped[str] = mapped_column(String(32))
    resource_kind: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    allowed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))  # ours, always
    client_request_id: Mapped[str | None] = mapped_column(String(128))  # the caller's X-Request-ID


class Tenant(Base):
    """A customer: its state and quotas. Usage is counted from what it holds (nodes.tenant_id)."""

    __tablename__ = "tenants"
    __table_args__ = (
        # A deleted tenant stays as a tombstone so its id is never reused.
        CheckConstraint("state IN ('active', 'suspended', 'deleted')", name="ck_tenants_state"),
        CheckConstraint(
            "quota_gpus >= 0 AND quota_nodes >= 0 AND quota_storage_gib >= 0",
            name="ck_tenants_quotas",
        ),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), server_default="active")
    quota_gpus: Mapped[int] = mapped_column(Integer, server_default="0")
    quota_nodes: Mapped[int] = mapped_column(Integer, server_default="0")
    quota_storage_gib: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotentRequest(Base):
    """A POST made with an Idempotency-Key: its body's digest and, once done, its response.
    Keys belong to a tenant and subject ('' for platform principals)."""

    __tablename__ = "idempotent_requests"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True, server_default="")
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method_path: Mapped[str] = mapped_column(String(1024))
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)  # None while the first one runs
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SshKey(Base):
    """A tenant's SSH public key, put on the nodes of its clusters. `owner` is the subject that
    added it (members manage their own)."""

    __tablename__ = "ssh_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_ssh_keys_tenant_name"),
        UniqueConstraint("tenant_id", "fingerprint", name="uq_ssh_keys_tenant_fingerprint"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Switch(Base):
    """An Ethernet switch of the fabric. Credentials never leave the inventory and the network
    worker (not in the API, not in logs)."""

    __tablename__ = "switches"
    __table_args__ = (CheckConstraint("role IN ('leaf', 'spine')", name="ck_switches_role"),)

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))
    nos: Mapped[str] = mapped_column(String(16))
    mgmt_address: Mapped[str] = mapped_column(String(255))  # host[:port] of its SSH server
    username: Mapped[str] = mapped_column(String(128))
    password: Mapped[str] = mapped_column(String(256))
    asn: Mapped[int] = mapped_column(BigInteger)
    vtep_address: Mapped[str | None] = mapped_column(String(45))
    routing: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))  # VRFs, SVIs
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:  # never show credentials
        return f"Switch(id={self.id!r}, nos={self.nos!r})"


class NicLink(Base):
    """A node NIC cabled to a switch port."""

    __tablename__ = "nic_links"
    __table_args__ = (UniqueConstraint("switch_id", "port", name="uq_nic_links_switch_port"),)

    mac: Mapped[str] = mapped_column(ForeignKey("nics.mac", ondelete="CASCADE"), primary_key=True)
    switch_id: Mapped[str] = mapped_column(ForeignKey("switches.id", ondelete="RESTRICT"))
    port: Mapped[str] = mapped_column(String(64))


class IbPort(Base):
    """An InfiniBand HCA port of a node, by port GUID ("0x" + 16 hex digits)."""

    __tablename__ = "ib_ports"

    guid: Mapped[str] = mapped_column(String(18), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    subnet: Mapped[str] = mapped_column(String(63), server_default="default")


class Network(Base):
    """A tenant's isolated network (or the one provisioning network): VLAN and L2 VNI, VRF with
    its L3 VNI, IPv4 subnet and InfiniBand PKey, all held in `allocations` while it exists."""

    __tablename__ = "networks"
    __table_args__ = (
        CheckConstraint("kind IN ('tenant', 'provisioning')", name="ck_networks_kind"),
        CheckConstraint(
            "state IN ('creating', 'ready', 'deleting', 'failed')", name="ck_networks_state"
        ),
        UniqueConstraint("tenant_id", "name", name="uq_networks_tenant_name"),
        Index("uq_networks_one_provisioning", "kind", unique=True,
              postgresql_where=text("kind = 'provisioning'")),
    )  # fmt: skip

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="tenant")
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    owner: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(63))
    cidr: Mapped[str] = mapped_column(CIDR)
    vlan: Mapped[int | None] = mapped_column(Integer)  # None: VLANs are allocated per switch
    l2vni: Mapped[int] = mapped_column(Integer)
    vrf_table: Mapped[int | None] = mapped_column(Integer)
    l3vni: Mapped[int | None] = mapped_column(Integer)
    l3vlan: Mapped[int | None] = mapped_column(Integer)
    pkey: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), server_default="creating")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Allocation(Base):
    """One value of one pool (VNI, VLAN, VRF table, subnet block, PKey) held by a network. The
    primary key makes a value impossible to hand out twice."""

    __tablename__ = "allocations"

    pool: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope: Mapped[str] = mapped_column(String(63), primary_key=True)  # "fabric" or a switch id
    value: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(8), server_default="")  # "l2"/"l3" for VLANs
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )


class Attachment(Base):
    """A node on a tenant network: its switch ports in the network's VLAN, its IB ports in the
    network's partition. A node is on at most one tenant network."""

    __tablename__ = "attachments"

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), primary_key=True
    )
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("networks.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), server_default="attaching")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


CLUSTER_STATES = ("creating", "ready", "scaling", "deleting", "failed")


class Cluster(Base):
    """A tenant's Slurm or Kubernetes cluster: what was asked for, and its nodes (nodes whose
    cluster_id is this one)."""

    __tablename__ = "clusters"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_clusters_tenant_name"),
        CheckConstraint("kind IN ('slurm', 'kubernetes')", name="ck_clusters_kind"),
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in CLUSTER_STATES) + ")",
            name="ck_clusters_state",
        ),
        CheckConstraint("node_count >= 1", name="ck_clusters_node_count"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    owner: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    node_count: Mapped[int] = mapped_column(Integer)
    gpu_model: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(String(128))
    network_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL")
    )
    network_owned: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    storage_mounts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default="[]"
    )
    state: Mapped[str] = mapped_column(String(16), server_default="creating")
    last_error: Mapped[str | None] = mapped_column(Text)
    # Secret: served only to a member's open boot session (never listed or logged).
    munge_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Kubernetes: the cluster's CA (its key a secret like the munge key) and bootstrap token.
    ca_cert: Mapped[str | None] = mapped_column(Text)
    ca_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The controller node the CA key was handed to (once; a replacement controller once too).
    ca_key_holder: Mapped[str | None] = mapped_column(String(63))
    join_token: Mapped[str | None] = mapped_column(Text)
    # Raised to ask the head node for a test job on every member (see its report).
    verify_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # the head node's last report
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ClusterMember(Base):
    """A node's place in its cluster: role, hostname and address on the cluster's network.
    `removing`: chosen for removal, drained by the head node before it is released."""

    __tablename__ = "cluster_members"
    __table_args__ = (
        UniqueConstraint("cluster_id", "hostname", name="uq_cluster_members_hostname"),
        UniqueConstraint("network_id", "address", name="uq_cluster_members_address"),
        CheckConstraint("role IN ('controller', 'compute')", name="ck_cluster_members_role"),
        CheckConstraint(
            "state IN ('joining', 'member', 'removing')", name="ck_cluster_members_state"
        ),
        Index("ix_cluster_members_cluster_id", "cluster_id"),
    )

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), primary_key=True
    )
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"))
    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"))
    hostname: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(INET)
    state: Mapped[str] = mapped_column(String(16), server_default="joining")
    replaces: Mapped[str | None] = mapped_column(String(63))  # the failed node it stands in for
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
