"""The lab's control HTTP API (127.0.0.1 only): enrollment records, node state, faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from lab.node import Faults, SimNode

if TYPE_CHECKING:
    from lab.server import Lab


class FaultsBody(BaseModel):
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_seconds: float = Field(default=0.0, ge=0.0, le=120.0)
    fail_next: int = Field(default=0, ge=0)
    ignore_soft_off: bool = False


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
        return {**lab.enrollment(node), **node.state()}

    @app.put("/lab/nodes/{node_id}/faults")
    def put_faults(node_id: str, body: FaultsBody) -> dict[str, Any]:
        node = node_or_404(node_id)
        node.set_faults(Faults(**body.model_dump()))
        return node.state()

    @app.put("/lab/nodes/{node_id}/bios")
    def reset_bios(node_id: str) -> dict[str, Any]:
        """Back to factory defaults (what a technician's "load defaults" does)."""
        node = node_or_404(node_id)
        node.reset_bios()
        return node.state()

    return app
