"""`metalplane nodes ...`: the operator's view of the fleet, through the API."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from core.settings import Settings

from .login import stored_token

app = typer.Typer(no_args_is_help=True, help="List, enroll, provision and release nodes")
console = Console()

ApiUrl = Annotated[str, typer.Option(envvar="METALPLANE_API_URL", help="API base URL")]
TERMINAL_STATES = {"active", "failed", "available", "maintenance"}


def _token() -> str:
    """METALPLANE_TOKEN, else the token `metalplane login` stored, else a local dev token."""
    token = os.environ.get("METALPLANE_TOKEN") or stored_token()
    if token:
        return token
    settings = Settings()
    if settings.dev_issuer_key_file.exists():
        from identity.dev_issuer import mint

        return mint(
            settings.dev_issuer_key_file,
            issuer=settings.issuer_url,
            audience=settings.jwt_audience,
            subject="metalplane-cli",
            roles=["operator"],
        )
    raise typer.BadParameter("run `metalplane login` or set METALPLANE_TOKEN")


def _client(api_url: str) -> httpx.Client:
    return httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {_token()}"}, timeout=30
    )


def _check(reply: httpx.Response) -> Any:
    if reply.is_error:
        try:
            problem = reply.json()
            message = problem.get("detail") or problem.get("title")
        except ValueError:
            message = reply.text
        console.print(f"[red]error {reply.status_code}:[/red] {message}")
        raise typer.Exit(1)
    return reply.json()


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table("ID", "STATE", "PHASE", "VENDOR", "GPU", "BMC", "IMAGE", "LAST ERROR")
    for node in items:
        gpu = node["gpu"]
        operation = node.get("operation") or {}
        table.add_row(
            node["id"],
            node["state"],
            operation.get("phase") or "",
            node["vendor"],
            f"{gpu['count']}x {gpu['model'] or '-'}",
            node["bmc"]["protocol"],
            node.get("image") or "",
            (node.get("last_error") or "")[:60],
        )
    return table


@app.command("list")
def list_nodes(api_url: ApiUrl = "http://127.0.0.1:8000", state: str | None = None) -> None:
    """List nodes."""
    with _client(api_url) as http:
        params = {"state": state} if state else {}
        console.print(_table(_check(http.get("/v1/nodes", params=params))["items"]))


@app.command()
def enroll(
    spec: Annotated[Path, typer.Argument(help="JSON file: one enrollment record or a list")],
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Enroll nodes described in a JSON file (same body as POST /v1/nodes)."""
    records = json.loads(spec.read_text())
    with _client(api_url) as http:
        for record in records if isinstance(records, list) else [records]:
            node = _check(http.post("/v1/nodes", json=record))
            console.print(f"enrolled {node['id']} ({node['state']})")


def _follow(http: httpx.Client, node_ids: list[str], timeout: float) -> bool:
    """Show each node's state and phase live until all reach a terminal state."""
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            items = [_check(http.get(f"/v1/nodes/{n}")) for n in node_ids]
            live.update(_table(items))
            done = all(
                n["state"] in TERMINAL_STATES and not (n.get("operation") or {}).get("phase")
                for n in items
            )
            if done or time.monotonic() > deadline:
                return all(n["state"] != "failed" for n in items)
            time.sleep(0.5)


@app.command()
def provision(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    image: Annotated[str, typer.Option(help="Golden image name")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Provision nodes with a golden image."""
    with _client(api_url) as http:
        for node_id in node_ids:
            accepted = _check(http.post(f"/v1/nodes/{node_id}/provision", json={"image": image}))
            console.print(f"{node_id}: provisioning, workflow {accepted['workflow_id']}")
        if wait and not _follow(http, node_ids, timeout):
            raise typer.Exit(1)


@app.command()
def release(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 600,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Release nodes: power off, clear tenant state, make them available."""
    with _client(api_url) as http:
        for node_id in node_ids:
            accepted = _check(http.post(f"/v1/nodes/{node_id}/release"))
            console.print(f"{node_id}: releasing, workflow {accepted['workflow_id']}")
        if wait and not _follow(http, node_ids, timeout):
            raise typer.Exit(1)
