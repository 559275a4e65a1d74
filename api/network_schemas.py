"""Request and response models of the fabric (switches, cabling, provisioning network) and of
tenant networks."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from drivers.switch.base import Nos
from inventory.models import Network
from inventory.states import NetworkState

from .schemas import Mac, NodeId, Secret, Text

Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
PortName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9/._:-]{0,63}$")]
Vlan = Annotated[int, Field(ge=2, le=4094)]
Vni = Annotated[int, Field(ge=1, le=16_777_215)]


def _ipv4_any_network(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value))  # strict: host bits must be zero
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network like 10.1.0.0/24 ({exc})") from exc


def _ipv4_network(value: str) -> str:
    network = _ipv4_any_network(value)
    if ipaddress.IPv4Network(network).prefixlen > 29:
        raise ValueError("a network needs at least 8 addresses (prefix /29 or shorter)")
    return network


def _ipv4_address(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 address") from exc


Cidr = Annotated[str, StringConstraints(max_length=18), AfterValidator(_ipv4_network)]
# A tenant's: only its shape here; the ranges and prefix lengths it may have are settings, so
# inventory.networks.check_tenant_cidr answers them (422 cidr-not-allowed naming the ranges).
TenantCidr = Annotated[str, StringConstraints(max_length=18), AfterValidator(_ipv4_any_network)]
Ipv4 = Annotated[str, StringConstraints(max_length=15), AfterValidator(_ipv4_address)]


class SwitchEnroll(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: NodeId
    role: Literal["leaf", "spine"]
    nos: Nos = Field(strict=False)  # JSON gives a string; strict would want the enum
    mgmt_address: Text = Field(min_length=1, max_length=255, description="host[:port] of SSH")
    username: Text = Field(min_length=1, max_length=128)
    password: Secret = Field(min_length=1, max_length=256)
    asn: int = Field(ge=1, le=4_294_967_295)
    vtep_address: Ipv4 | None = None
    routing: bool = Field(default=True, description="the switch runs VRFs and SVIs")


class SwitchAccessUpdate(BaseModel):
    """How to reach and log in to a switch: for a new management address or rotated
    credentials. Absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mgmt_address: Text | None = Field(default=None, min_length=1, max_length=255)
    username: Text | None = Field(default=None, min_length=1, max_length=128)
    password: Secret | None = Field(default=None, min_length=1, max_length=256)


class SwitchOut(BaseModel):
    id: str
    role: str
    nos: str
    mgmt_address: str
    asn: int
    vtep_address: str | None
    routing: bool
    created_at: datetime


class SwitchList(BaseModel):
    items: list[SwitchOut]
    next: str | None = None


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mac: Mac
    switch: NodeId
    port: PortName


class Cabling(BaseModel):
    """A node's cabling: NIC to switch port, and its InfiniBand port GUIDs."""

    model_config = ConfigDict(extra="forbid")

    links: list[LinkIn] = Field(default_factory=list, max_length=16)
    ib_guids: list[Annotated[str, StringConstraints(pattern=r"^(0x)?[0-9a-fA-F]{16}$")]] = Field(
        default_factory=list, max_length=16
    )
    ib_subnet: Label = "default"


class ProvisioningNetworkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    vlan: Vlan
    vni: Vni
    cidr: Cidr


class ProvisioningNetworkOut(BaseModel):
    vlan: int
    vni: int
    cidr: str


# Tenant-owned: `tenant_id` or `owner` in the body is ignored (no mass assignment).
class NetworkCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Label
    cidr: TenantCidr | None = Field(
        default=None,
        description="IPv4 subnet inside the operator's tenant ranges (default 10/8, 172.16/12,"
        " 192.168/16, 100.64/10; /16 to /29), else 422 cidr-not-allowed; allocated from the"
        " tenant supernet when absent",
    )


class NetworkOut(BaseModel):
    id: uuid.UUID
    tenant_id: str
    owner: str | None
    name: str
    cidr: str
    state: NetworkState
    last_error: str | None
    vlan: int | None = Field(description="None when VLANs are allocated per switch")
    l2vni: int
    l3vni: int | None
    vrf_table: int | None
    pkey: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, network: Network) -> NetworkOut:
        return cls(
            id=network.id, tenant_id=str(network.tenant_id), owner=network.owner,
            name=network.name, cidr=str(network.cidr), state=network.state,
            last_error=network.last_error, vlan=network.vlan, l2vni=network.l2vni,
            l3vni=network.l3vni, vrf_table=network.vrf_table, pkey=network.pkey,
            created_at=network.created_at, updated_at=network.updated_at,
        )  # fmt: skip


class NetworkList(BaseModel):
    items: list[NetworkOut]
    next: str | None = None


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    node_id: NodeId


class AttachmentOut(BaseModel):
    node_id: str
    network_id: uuid.UUID
    state: str
    workflow_id: str | None = None


class AttachmentList(BaseModel):
    items: list[AttachmentOut]
