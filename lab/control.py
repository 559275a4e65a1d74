"""The lab's control HTTP API (127.0.0.1 only): enrollment records, node state, faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from lab.node import Faults, SimNode
from lab.slurm import SlurmLabError

if TYPE_CHECKING:
    from lab.server import Lab


class NetnsBody(BaseModel):
    netns: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SlurmCommand(BaseModel):
    argv: list[str] = Field(min_length=1, max_length=64)
    timeout: float = Field(default=30.0, gt=0, le=600)


class PowerBody(BaseModel):
    state: Literal["on", "off"]


class FaultsBody(BaseModel):
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_seconds: float = Field(default=0.0, ge=0.0, le=120.0)
    fail_next: int = Field(default=0, ge=0)
    ignore_soft_off: bool = False
    wipe_fails: bool = False
    gpus_missing: int = Field(default=0, ge=0)
    gpu_diag_fails: bool = False


def create_app(lab: Lab) -> FastAPI:
    app = FastAPI(title="metalplane lab", docs_url=None, redoc_url=None)

    def node_or_404(node_id: str) -> SimNode:
        node = lab.nodes.get(node_id)
        if node is None:
            raise HTTPException(status_code=404, detail=f"no lab node {node_id}")
        return node

    @app.get("/lab/nodes")
    def list_nodes() -> list[dict[str, Any]]:
        return [lab.enrollment(node) for node in lab.nodes.values()]

    @app.get("/lab/nodes/{node_id}")
    def get_node(node_id: str) -> dict[str, Any]:
        node = node_or_404(node_id)
        cluster = lab.clusters.status(node_id) if lab.clusters is not None else None
        qemu = lab.qemu.pids().get(node_id) if lab.qemu is not None else None
        ssh_port = lab.ssh_port(node) if qemu is not None else None
        return {
            **lab.enrollment(node), **node.state(), "cluster": cluster, "qemu_pid": qemu,
            "ssh_port": ssh_port,
        }  # fmt: skip

    @app.put("/lab/nodes/{node_id}/netns")
    def put_netns(node_id: str, body: NetnsBody) -> dict[str, Any]:
        """Where the node's NIC is (its fabric host): its cluster daemons run there."""
        node = node_or_404(node_id)
        node.set_netns(body.netns)
        return node.state()

    @app.post("/lab/nodes/{node_id}/slurm")
    async def slurm_command(node_id: str, body: SlurmCommand) -> dict[str, Any]:
        """A Slurm client command on the node's cluster (what a user logged in there runs)."""
        node_or_404(node_id)
        if lab.clusters is None:
            raise HTTPException(status_code=409, detail="this lab runs no Slurm (lab --slurm)")
        cluster = lab.clusters.slurm.status(node_id).cluster
        if cluster is None:
            raise HTTPException(status_code=409, detail=f"{node_id} runs no Slurm")
        try:
            out = await lab.clusters.slurm.run(cluster, *body.argv, timeout=body.timeout)
        except SlurmLabError as exc:
            return {"ok": False, "stdout": "", "error": str(exc)}
        return {"ok": True, "stdout": out, "error": None}

    @app.put("/lab/nodes/{node_id}/faults")
    def put_faults(node_id: str, body: FaultsBody) -> dict[str, Any]:
        node = node_or_404(node_id)
        node.set_faults(Faults(**body.model_dump()))
        return node.state()

    @app.put("/lab/nodes/{node_id}/power")
    def put_power(node_id: str, body: PowerBody) -> dict[str, Any]:
        """Behind the platform's back, as a technician's power button or a tripped PDU."""
        node = node_or_404(node_id)
        node.press_power(body.state)
        return node.state()

    @app.put("/lab/nodes/{node_id}/bios")
    def reset_bios(node_id: str) -> dict[str, Any]:
        """Back to factory defaults (what a technician's "load defaults" does)."""
        node = node_or_404(node_id)
        node.reset_bios()
        return node.state()

    return app
