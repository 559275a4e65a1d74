"""The head node's cluster report (docs/boot-contract.md): its model, and when it says that a
cluster has converged. Shared by the boot service, the cluster workflows and the lab."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.storable import Storable

# Scheduler states of a node that is up and takes jobs; flags that say it does not.
UP_STATES = frozenset({"idle", "mixed", "allocated", "ready"})
NOT_UP_FLAGS = frozenset({"DRAIN", "NOT_RESPONDING", "DOWN", "FAIL", "CORDONED"})


class ReportedNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63)
    state: str = Field(max_length=32)  # `sinfo` base state, lower case ("idle", "down", ...)
    flags: list[str] = Field(default_factory=list, max_length=16)  # "DRAIN", ...
    features: list[str] = Field(default_factory=list, max_length=32)
    gres: str = Field(default="", max_length=256)  # "gpu:a100:8"
    reason: str = Field(default="", max_length=256)


class Verification(BaseModel):
    """The test job the head node ran across all members for generation `generation`."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(ge=0)
    ok: bool
    hosts: list[str] = Field(default_factory=list, max_length=4096)
    error: str | None = Field(default=None, max_length=1024)


class ClusterReport(Storable):
    model_config = ConfigDict(extra="forbid")

    nodes: list[ReportedNode] = Field(default_factory=list, max_length=4096)
    verification: Verification | None = None


def _nodes(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    found = (report or {}).get("nodes") or []
    return {n["name"]: n for n in found if isinstance(n, dict) and "name" in n}


def _up(node: dict[str, Any] | None) -> bool:
    if node is None or node.get("state") not in UP_STATES:
        return False
    return not set(node.get("flags") or []) & NOT_UP_FLAGS


def converged(
    report: dict[str, Any] | None,
    members: Sequence[str],
    removed: Sequence[str],
    generation: int,
) -> bool:
    """Every member up, none of `removed` left, and a test job of at least `generation` ran
    on every member."""
    nodes = _nodes(report)
    if not all(_up(nodes.get(name)) for name in members):
        return False
    if any(name in nodes for name in removed):
        return False
    verification = (report or {}).get("verification") or {}
    return (
        verification.get("generation", 0) >= generation
        and verification.get("ok") is True
        and set(members) <= set(verification.get("hosts") or [])
    )


def describe(report: dict[str, Any] | None) -> str:
    """One line for an operator: what the head node last said."""
    if not report:
        return "no report from the head node (is the controller up and on the network?)"
    nodes = _nodes(report)
    states = ", ".join(
        f"{name} {n.get('state')}" + (f" ({'+'.join(n['flags'])})" if n.get("flags") else "")
        for name, n in sorted(nodes.items())
    )
    line = f"head node reports {states or 'no nodes'}"
    verification = report.get("verification") or {}
    if verification and not verification.get("ok"):
        line += f"; test job failed: {verification.get('error')}"
    return line
