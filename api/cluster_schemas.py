"""Request and response models of tenant clusters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from images.mounts import StorageMount, reserved
from inventory.models import Cluster, ClusterMember
from inventory.states import ClusterState

from .schemas import Text

# A DNS label short enough for a Slurm ClusterName and the cluster's network name.
ClusterName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")]


# Tenant-owned: `tenant_id` or `owner` in the body is ignored (no mass assignment).
class ClusterCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: ClusterName
    kind: Literal["slurm", "kubernetes"] = Field(
        description="what the nodes bootstrap: a Slurm cluster, or Kubernetes with kubeadm"
    )
    node_count: int = Field(ge=1, le=4096, description="the first node is the head node")
    gpu_model: Text = Field(min_length=1, max_length=128, description="e.g. `H100-SXM5-80GB`")
    image: Text = Field(min_length=1, max_length=128, description="a golden image, e.g. `lab`")
    network: uuid.UUID | None = Field(
        default=None, description="a ready network of the tenant; one is created when absent"
    )
    storage_mounts: list[StorageMount] = Field(
        default_factory=list, max_length=16,
        description="parallel filesystems every node mounts; checked in its phone-home facts",
    )  # fmt: skip

    @field_validator("storage_mounts")
    @classmethod
    def _distinct_safe_points(cls, mounts: list[StorageMount]) -> list[StorageMount]:
        points = [m.mount_point for m in mounts]  # normalized by StorageMount
        if len(set(points)) != len(points):
            raise ValueError("two mounts share a mount point")
        unsafe = [p for p in points if reserved(p)]
        if unsafe:
            raise ValueError(f"mount points {unsafe} would shadow the operating system")
        return mounts


class ClusterScale(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_count: int = Field(ge=1, le=4096)


class MemberOut(BaseModel):
    node_id: str
    hostname: str
    role: str
    address: str
    state: str = Field(description="joining, member, or removing (being drained)")
    replaces: str | None = None

    @classmethod
    def of(cls, member: ClusterMember) -> MemberOut:
        return cls(
            node_id=member.node_id, hostname=member.hostname, role=member.role,
            address=str(member.address), state=member.state, replaces=member.replaces,
        )  # fmt: skip


class ClusterOut(BaseModel):
    id: uuid.UUID
    tenant_id: str
    owner: str | None
    name: str
    kind: str
    node_count: int
    gpu_model: str
    image: str
    network_id: uuid.UUID | None
    network_owned: bool = Field(description="created for this cluster, deleted with it")
    storage_mounts: list[StorageMount]
    state: ClusterState
    last_error: str | None
    members: list[MemberOut]
    report: dict[str, Any] | None = Field(description="the head node's last report")
    reported_at: datetime | None
    workflow_id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, cluster: Cluster, members: list[ClusterMember], workflow_id: str) -> ClusterOut:
        return cls(
            id=cluster.id, tenant_id=cluster.tenant_id, owner=cluster.owner, name=cluster.name,
            kind=cluster.kind, node_count=cluster.node_count, gpu_model=cluster.gpu_model,
            image=cluster.image, network_id=cluster.network_id,
            network_owned=cluster.network_owned, state=cluster.state,
            storage_mounts=[StorageMount(**m) for m in cluster.storage_mounts],
            last_error=cluster.last_error, members=[MemberOut.of(m) for m in members],
            report=cluster.report, reported_at=cluster.reported_at, workflow_id=workflow_id,
            created_at=cluster.created_at, updated_at=cluster.updated_at,
        )  # fmt: skip


class ClusterList(BaseModel):
    items: list[ClusterOut]
    next: str | None = None
