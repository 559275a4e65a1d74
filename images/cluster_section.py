"""A cluster member's part in its cluster, as its user-data carries it (`metalplane.cluster`,
docs/boot-contract.md), and the secrets it fetches with its boot token."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from images.kubeadm import KubeRole
from images.slurm import SlurmRole


class ClusterSection(BaseModel):
    """Without secrets: user-data is served by MAC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["slurm", "kubernetes"]
    id: str
    secrets_url: str  # POST with the phone-home token, once per boot, before phoning home
    report_url: str | None = None  # the head node's reports (docs/boot-contract.md)
    report_interval_seconds: float = Field(default=2.0, gt=0, le=300)
    slurm: SlurmRole | None = None
    kubernetes: KubeRole | None = None

    @model_validator(mode="after")
    def _one_role(self) -> ClusterSection:
        if (self.slurm is not None, self.kubernetes is not None) != (
            self.kind == "slurm", self.kind == "kubernetes",
        ):  # fmt: skip
            raise ValueError(f"a {self.kind} cluster's section carries its {self.kind} role only")
        return self


class ClusterSecrets(BaseModel):
    """What the secrets URL answers to a member's boot (once per boot)."""

    munge_key: str | None = None  # Slurm: base64
    report_token: str | None = None  # the head node's, for the report URL; it expires
    kubeadm_config: str | None = None  # Kubernetes: Init + Cluster (head) or Join (workers)
    ca_cert: str | None = None  # Kubernetes: the cluster CA (PEM)
    # Kubernetes, the controller node's first fetch only: the CA's key (PEM).
    ca_key: str | None = None
