"""What the boot service tells a cluster member: its role for its user-data (no secrets) and,
for its current boot only (once), its secrets. Rendered from the inventory on each boot, so a
member that replaced a failed one, or joined later, gets the cluster as it is now."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import images
from images import kubeadm
from images.cluster_section import ClusterSecrets, ClusterSection
from images.slurm import (
    SlurmRole,
    cluster_key,
    gres_type,
    render_gres_conf,
    render_slurm_conf,
    slurmd_conf,
)
from inventory import clusters
from inventory.models import Cluster, ClusterMember, Node

GPU_VENDORS = ("nvidia", "amd", "intel")


@dataclass(frozen=True)
class Member:
    cluster: Cluster
    member: ClusterMember
    controller: ClusterMember
    node: Node

    @property
    def head(self) -> bool:
        return self.member.role == "controller"

    @property
    def controller_ip(self) -> str:
        return str(ipaddress.ip_interface(str(self.controller.address)).ip)

    @property
    def key(self) -> str:
        return cluster_key(self.cluster.name, str(self.cluster.id))

    @property
    def labels(self) -> dict[str, str]:
        return {
            "metalplane.io/cluster": self.cluster.name,
            "metalplane.io/gpu": gres_type(self.cluster.gpu_model),
        }


async def member_of(db: AsyncSession, node_id: str) -> Member | None:
    """The node's place in its cluster; None when it is in none (or its cluster has no head
    node, between a head node's failure and its replacement)."""
    member = await clusters.membership(db, node_id)
    if member is None:
        return None
    controller = await db.scalar(
        select(ClusterMember).where(
            ClusterMember.cluster_id == member.cluster_id, ClusterMember.role == "controller"
        )
    )
    if controller is None:
        return None
    cluster = await db.get_one(Cluster, member.cluster_id)
    return Member(cluster, member, controller, await db.get_one(Node, node_id))


def _slurm(m: Member) -> SlurmRole:
    gpu, count = gres_type(m.cluster.gpu_model), m.node.gpu_count
    image = images.get_image(m.cluster.image)
    return SlurmRole(
        cluster=m.key, role=m.member.role, node_name=m.member.hostname,
        address=str(m.member.address), controller=m.controller_ip,
        slurmd_conf=slurmd_conf(gpu, count), gpus=count, gpu_type=gpu,
        slurm_conf=render_slurm_conf(m.cluster.name, m.controller.hostname, m.controller_ip)
        if m.head else None,
        gres_conf=render_gres_conf(gpu, count, image.gpu_device_prefix) if m.head else None,
    )  # fmt: skip


def _kube(m: Member) -> kubeadm.KubeRole:
    vendor = (m.node.gpu_vendor or "").lower()
    return kubeadm.KubeRole(
        cluster=m.key, role=m.member.role, node_name=m.member.hostname,
        address=str(m.member.address),
        api_endpoint=f"{m.controller_ip}:{kubeadm.API_SERVER_PORT}",
        gpu_vendor=vendor if vendor in GPU_VENDORS and m.node.gpu_count else None,
        gpus=m.node.gpu_count, labels=m.labels,
    )  # fmt: skip


def section(m: Member, public_url: str) -> dict[str, Any]:
    base = public_url.rstrip("/")
    kind = m.cluster.kind
    built = ClusterSection(
        kind=kind, id=str(m.cluster.id), secrets_url=f"{base}/boot/cluster-secrets",
        report_url=f"{base}/boot/cluster-report" if m.head else None,
        slurm=_slurm(m) if kind == "slurm" else None,
        kubernetes=_kube(m) if kind == "kubernetes" else None,
    )  # fmt: skip
    return built.model_dump(mode="json", exclude={"slurm": {"munge_key"}}, exclude_none=True)


def secrets(m: Member, report_token: str | None, *, ca_key: bool = False) -> ClusterSecrets:
    """`report_token`: the head node's (None for the others); `ca_key`: the Kubernetes CA's
    key goes with them (the controller's first fetch only: inventory.boot_sessions)."""
    cluster = m.cluster
    if cluster.kind == "slurm":
        assert cluster.munge_key is not None
        return ClusterSecrets(
            munge_key=base64.b64encode(cluster.munge_key).decode(), report_token=report_token
        )
    assert cluster.ca_cert is not None and cluster.ca_key and cluster.join_token
    config = kubeadm.KubeadmCluster(
        name=cluster.name, control_plane_address=m.controller_ip, token=cluster.join_token,
        ca_hash=kubeadm.ca_cert_hash(cluster.ca_cert.encode()),
    )  # fmt: skip
    render = kubeadm.render_init if m.head else kubeadm.render_join
    return ClusterSecrets(
        report_token=report_token,
        kubeadm_config=render(config, m.member.hostname, m.labels),
        ca_cert=cluster.ca_cert,
        ca_key=cluster.ca_key.decode() if m.head and ca_key else None,
    )
