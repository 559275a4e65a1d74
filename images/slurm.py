"""Slurm on a cluster's nodes: a node's role (the user-data's `metalplane.cluster` section,
docs/boot-contract.md) and the cluster's configuration files, rendered per cluster."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"  # a Slurm ClusterName / NodeName and a hostname
SLURMCTLD_PORT, SLURMD_PORT = 6817, 6818


class SlurmRole(BaseModel):
    """What one node must run: munged, slurmd, and on the controller slurmctld too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str = Field(pattern=NAME)
    role: Literal["controller", "compute"]
    node_name: str = Field(pattern=NAME)  # also the node's hostname: slurmctld checks it
    address: str  # this node on the tenant network, "10.50.0.11/24" (or a bare IP)
    controller: str  # slurmctld's address
    slurmctld_port: int = Field(default=SLURMCTLD_PORT, ge=1, le=65535)
    slurmd_port: int = Field(default=SLURMD_PORT, ge=1, le=65535)
    # base64; never in user-data: the node fetches it from the secrets URL with its boot token
    munge_key: bytes | None = Field(default=None, min_length=32, repr=False)
    slurmd_conf: str  # `slurmd -Z --conf`: "CPUs=.. RealMemory=.. Feature=.. Gres=gpu:a100:8"
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_type: str | None = None
    slurm_conf: str | None = None  # controller only, served configless to every slurmd
    gres_conf: str | None = None  # controller only

    @field_validator("munge_key", mode="before")
    @classmethod
    def _decode_key(cls, value: object) -> object:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else value

    @field_serializer("munge_key")
    def _encode_key(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode()

    @field_validator("address")
    @classmethod
    def _interface(cls, value: str) -> str:
        ipaddress.ip_interface(value)
        return value

    @field_validator("controller")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))

    @model_validator(mode="after")
    def _controller_files(self) -> SlurmRole:
        if (self.role == "controller") != (self.slurm_conf is not None):
            raise ValueError("slurm_conf is required on the controller, and only there")
        if self.gres_conf is not None and self.role != "controller":
            raise ValueError("gres_conf is the controller's")
        return self

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


def cluster_key(name: str, cluster_id: str) -> str:
    """The cluster's key on its nodes (state directories): unique, as tenants reuse names."""
    return f"{name[:27]}-{cluster_id.replace('-', '')[:12]}"


def render_slurm_conf(
    cluster: str,
    controller_name: str,
    controller: str,
    *,
    slurmctld_port: int = SLURMCTLD_PORT,
    slurmd_port: int = SLURMD_PORT,
) -> str:
    """slurm.conf for dynamic nodes (`slurmd -Z`) fetching it configless. Every path is under
    the node's private /run, so the text holds no host path. No cgroups: the plugins are the
    cgroup-free ones, and MaxNodeCount stays fixed (changing it on reconfigure can kill
    slurmctld)."""
    lines = [
        f"ClusterName={cluster}",
        # The name must equal the controller's hostname, else "not a valid controller".
        f"SlurmctldHost={controller_name}({controller})",
        f"SlurmctldPort={slurmctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "StateSaveLocation=/run/slurmctld-state",
        "SlurmdSpoolDir=/run/slurmd",
        "SlurmctldPidFile=/run/slurmctld.pid",
        "SlurmdPidFile=/run/slurmd.pid",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "SlurmctldParameters=enable_configless",
        "MaxNodeCount=256",
        "TreeWidth=65533",
        "GresTypes=gpu",
        "Nodeset=metalplane Feature=metalplane",  # dynamic nodes join the partition by feature
        "PartitionName=main Nodes=metalplane Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def gres_type(gpu_model: str) -> str:
    """The GPU model as a Slurm GRES type: `H100 80GB HBM3` -> `h100-80gb-hbm3`."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_model.lower()).strip("-")[:40] or "gpu"


def render_gres_conf(gpu_type: str, count: int, device_prefix: str) -> str:
    """gres.conf, served configless with slurm.conf. One line for every node (no NodeName):
    the cluster's nodes share their GPU model and count. A dynamic node's GPUs need `File=`
    on the controller's side (a bare Count is reported as 0)."""
    lines = ["AutoDetect=off"]
    if count:
        files = f"{device_prefix}0" if count == 1 else f"{device_prefix}[0-{count - 1}]"
        lines.append(f"Name=gpu Type={gpu_type} File={files}")
    return "\n".join(lines) + "\n"


def slurmd_conf(gpu_type: str, count: int) -> str:
    """`slurmd -Z --conf`: features and GPUs (CPUs and memory are detected by slurmd)."""
    conf = f"Feature=metalplane,{gpu_type}"
    return conf + (f" Gres=gpu:{gpu_type}:{count}" if count else "")
