"""Request and response models of the API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

import images
from core.console_address import parse_address
from inventory import ssh_keys
from inventory.models import Node

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def _normalize_mac(value: str) -> str:
    lowered = value.strip().lower()
    if not _MAC.match(lowered):
        raise ValueError(f"{value!r} is not a MAC address (expected 6 hex octets)")
    digits = re.sub(r"[^0-9a-f]", "", lowered)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


Mac = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$"),  # for the schema
    AfterValidator(_normalize_mac),  # one separator style throughout
]

# Text stored in PostgreSQL: no control characters (NUL cannot be stored at all).
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]
# A label filter of a listing: `key=value`, as stored labels are (key up to 63, value 255).
LabelFilter = Annotated[
    str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f=]{1,63}=[^\x00-\x1f\x7f]{0,255}$")
]


def _no_control_characters(secret: SecretStr) -> SecretStr:
    if re.search(r"[\x00-\x1f\x7f]", secret.get_secret_value()):
        raise ValueError("must not contain control characters")
    return secret


Secret = Annotated[SecretStr, AfterValidator(_no_control_characters)]
NodeId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length=63)
]


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no true/false as numbers

    vendor: Text | None = Field(default=None, max_length=64)
    model: Text | None = Field(default=None, max_length=128)
    count: int = Field(default=0, ge=0, le=64)


class BmcIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["ipmi", "redfish"]
    address: Text = Field(
        min_length=1, max_length=512, description="ipmi: host[:port]; redfish: System URL"
    )
    username: Text = Field(min_length=1, max_length=128)
    password: Secret = Field(min_length=1, max_length=256)
    redfish_address: Text | None = Field(
        default=None, description="For IPMI nodes: Redfish System URL used for BIOS settings"
    )


class BmcOut(BaseModel):
    protocol: str
    address: str
    redfish_address: str | None = None


def _catalog_image(name: str) -> str:
    try:
        images.get_image(name)
    except images.UnknownImage as exc:
        raise ValueError(str(exc)) from exc
    return name


def _console_address(address: str) -> str:
    parse_address(address)  # ValueError: a clear 422
    return address


ConsoleAddress = Annotated[str, Field(max_length=512), AfterValidator(_console_address)]


class NodeEnroll(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent drop

    id: NodeId
    vendor: Text = Field(min_length=1, max_length=128)
    model: Text = Field(min_length=1, max_length=128)
    gpu: Gpu = Field(default_factory=Gpu)
    macs: list[Mac] = Field(min_length=1, max_length=16)
    bmc: BmcIn
    labels: dict[Annotated[Text, Field(max_length=63)], Annotated[Text, Field(max_length=255)]] = (
        Field(default_factory=dict)
    )
    sku: str | None = Field(
        default=None,
        max_length=128,
        description="Its SKU (hardware class) in the SKU catalog; unset: the catalog's match "
        "for its vendor, model and GPU",
    )
    agent_image: Annotated[str, Field(max_length=128), AfterValidator(_catalog_image)] | None = (
        Field(
            default=None,
            description="The catalog image its cleaning boots (the agent's ramdisk for this "
            "hardware); unset: the platform's `agent_image` setting",
        )
    )
    console: ConsoleAddress | None = Field(
        default=None,
        description="Its serial console as a byte stream: a console server's raw TCP port "
        "(tcp://HOST:PORT) or a VM's serial socket (unix:///PATH); unset: an IPMI BMC's "
        "Serial-over-LAN (a Redfish-only node then has none)",
    )


class OperationOut(BaseModel):
    kind: str
    workflow_id: str
    phase: str | None = None


class NodeOut(BaseModel):
    """A node. Tenants see only what is theirs: no BMC, MACs, labels or errors (null)."""

    id: str
    state: str
    vendor: str
    model: str
    gpu: Gpu
    macs: list[str] | None
    bmc: BmcOut | None
    image: str | None
    agent_image: str | None = Field(default=None, description="the ramdisk its cleaning boots")
    console: str | None = Field(default=None, description="its serial console's address")
    sku: str | None = Field(default=None, description="its hardware class")
    hardware: dict[str, Any] | None = Field(
        default=None, description="what its last inspection found (core.facts.HardwareRecord)"
    )
    needs_cleaning: bool | None = Field(
        default=None, description="a tenant's data may be on its disks (no verified clean since)"
    )
    last_error: str | None
    maintenance_reason: str | None = Field(
        default=None, description="why an operator took it out of service (maintenance)"
    )
    power_state: str | None = Field(
        default=None, description="the platform's record of its power: on, off, or never read"
    )
    bmc_unreachable_since: datetime | None = Field(
        default=None, description="since when its BMC has not answered the power sync"
    )
    labels: dict[str, str] | None
    tenant_id: str | None = Field(default=None, description="the tenant that holds it")
    cluster_id: uuid.UUID | None = Field(default=None, description="its cluster, if any")
    operation: OperationOut | None
    facts: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls,
        node: Node,
        *,
        phase: str | None = None,
        with_facts: bool = False,
        platform_view: bool = True,
    ) -> NodeOut:
        """`platform_view`: the whole record (operators); else a tenant's view of its node."""
        out = cls(
            id=node.id,
            state=node.state,
            vendor=node.vendor,
            model=node.model,
            gpu=Gpu(vendor=node.gpu_vendor, model=node.gpu_model, count=node.gpu_count),
            macs=[nic.mac for nic in node.nics],
            bmc=BmcOut(
                protocol=node.bmc_protocol,
                address=node.bmc_address,
                redfish_address=node.bmc_redfish_address,
            ),
            image=node.image,
            agent_image=node.agent_image,
            console=node.console_address,
            sku=node.sku,
            hardware=node.hardware if with_facts else None,
            needs_cleaning=node.needs_cleaning,
            last_error=node.last_error,
            maintenance_reason=node.maintenance_reason,
            power_state=node.power_state,
            bmc_unreachable_since=node.bmc_unreachable_since,
            labels=node.labels or {},
            tenant_id=node.tenant_id,
            cluster_id=node.cluster_id,
            operation=OperationOut(kind=node.operation, workflow_id=node.workflow_id, phase=phase)
            if node.operation and node.workflow_id
            else None,
            facts=node.facts if with_facts else None,
            created_at=node.created_at,
            updated_at=node.updated_at,
        )
        if not platform_view:
            out.macs = out.bmc = out.labels = out.last_error = out.maintenance_reason = None
            out.power_state = out.bmc_unreachable_since = None
            out.agent_image = out.needs_cleaning = out.hardware = out.console = None
        return out


class NodeList(BaseModel):
    items: list[NodeOut]
    next: str | None = None


class ProvisionRequest(BaseModel):
    image: Text = Field(min_length=1, max_length=128)


class DiscoveredNodeOut(BaseModel):
    mac: str
    first_seen: datetime
    last_seen: datetime
    boots: int = Field(description="network boots asked for since it was first seen")
    last_address: str | None = Field(description="the address it last asked from")


class DiscoveredNodeList(BaseModel):
    items: list[DiscoveredNodeOut]
    next: str | None = Field(description="cursor of the next page; null on the last")


class MaintenanceRequest(BaseModel):
    reason: Text = Field(min_length=1, max_length=1000, description="why, for the other operators")


class RebootRequest(BaseModel):
    hard: bool = Field(
        default=False, description="power off at once, without the ACPI power button first"
    )


class OperationAccepted(BaseModel):
    node_id: str
    operation: str
    workflow_id: str
    run_id: str | None


class ImageOut(BaseModel):
    name: str
    description: str
    os: str
    profile: str
    ready: bool


class ImageList(BaseModel):
    items: list[ImageOut]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    subject: str
    tenant: str | None
    roles: list[str]
    action: str
    resource_kind: str
    resource_id: str | None
    allowed: bool
    reason: str
    request_id: str | None = Field(description="ours: in the logs and the X-Request-ID reply")
    client_request_id: str | None = Field(description="the caller's X-Request-ID, if it sent one")


class AuditList(BaseModel):
    items: list[AuditEntryOut]
    next: str | None = None


TenantId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
]  # a DNS label: it names networks and directories later


class Quotas(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no true/false as numbers

    gpus: int = Field(default=0, ge=0, le=1_000_000)
    nodes: int = Field(default=0, ge=0, le=1_000_000)
    storage_gib: int = Field(default=0, ge=0, le=10**12)


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: TenantId
    display_name: Text = Field(min_length=1, max_length=255)
    quotas: Quotas = Field(default_factory=Quotas)


class TenantChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: Text | None = Field(default=None, min_length=1, max_length=255)
    state: Literal["active", "suspended"] | None = None
    quotas: Quotas | None = None


class TenantUsage(BaseModel):
    """What the tenant holds now. Storage is not metered until storage is built (issue 5)."""

    gpus: int
    nodes: int


class TenantOut(BaseModel):
    id: str
    display_name: str
    state: str
    quotas: Quotas
    usage: TenantUsage
    created_at: datetime
    updated_at: datetime


class TenantList(BaseModel):
    items: list[TenantOut]
    next: str | None = None


def _public_key(value: str) -> str:
    return ssh_keys.parse_public_key(value).text


# Tenant-owned resources take their tenant and owner from the token, never from the body:
# fields a client adds (`tenant_id`, `owner`) are ignored (no mass assignment).
class SshKeyCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Text = Field(min_length=1, max_length=128)
    public_key: Annotated[Text, AfterValidator(_public_key)] = Field(
        max_length=16_384, description="An OpenSSH public key line: `<type> <base64> [comment]`"
    )


class SshKeyChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Text = Field(min_length=1, max_length=128)


class SshKeyOut(BaseModel):
    id: uuid.UUID
    tenant_id: str
    owner: str
    name: str
    public_key: str
    fingerprint: str = Field(description="SHA256 fingerprint, as `ssh-keygen -l` prints it")
    created_at: datetime


class SshKeyList(BaseModel):
    items: list[SshKeyOut]
    next: str | None = None
