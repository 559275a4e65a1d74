"""A node's Slurm role (the user-data's `metalplane.cluster` section) and the cluster's files."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
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
GPU_DEVICE = "/run/gpu/nvidia"  # placeholder files the lab touches in a node's private /run


class SlurmRole(BaseModel):
    """What one node must run: munged, slurmd, and on the controller slurmctld too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str = Field(pattern=NAME)
    role: Literal["controller", "compute"]
    node_name: str = Field(pattern=NAME)  # also the node's hostname: slurmctld checks it
    address: str  # this node on the tenant network, "10.50.0.11/24" (or a bare IP)
    controller: str  # slurmctld's address
    slurmctld_port: int = Field(default=6817, ge=1, le=65535)
    slurmd_port: int = Field(default=6818, ge=1, le=65535)
    munge_key: bytes = Field(min_length=32, repr=False)  # base64 in user-data
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
    def _encode_key(self, value: bytes) -> str:
        return base64.b64encode(value).decode()

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


def render_slurm_conf(
    cluster: str,
    controller_name: str,
    controller: str,
    *,
    slurmctld_port: int = 6817,
    slurmd_port: int = 6818,
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


def render_gres_conf(gpus: Mapping[str, tuple[str, int]]) -> str:
    """gres.conf for {node: (gpu type, count)}. A dynamic node's GPUs need `File=` lines on the
    controller side (a bare Count is reported as 0), hence the placeholder files."""
    lines = ["AutoDetect=off"]
    for node, (kind, count) in sorted(gpus.items()):
        if count:
            files = f"{GPU_DEVICE}0" if count == 1 else f"{GPU_DEVICE}[0-{count - 1}]"
            lines.append(f"NodeName={node} Name=gpu Type={kind} File={files}")
    return "\n".join(lines) + "\n"
