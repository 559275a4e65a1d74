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

app = typer.Typer(
    no_args_is_help=True,
    help="List, enroll, provision, reboot and release nodes; take them out of service",
)
console = Console()

ApiUrl = Annotated[str, typer.Option(envvar="METALPLANE_API_URL", help="API base URL")]
TERMINAL_STATES = {"active", "failed", "available", "maintenance", "rescue"}


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
            (node.get("bmc") or {}).get("protocol", "-"),  # a tenant's view has no BMC
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


# A claimed node changes (updated_at) within about a second; one that has not after this long
# was refused by its workflow (its reason is in the Temporal UI).
CLAIM_GRACE_SECONDS = 60.0


def _updated(http: httpx.Client, node_ids: list[str]) -> dict[str, str]:
    return {n: _check(http.get(f"/v1/nodes/{n}"))["updated_at"] for n in node_ids}


def _follow(
    http: httpx.Client, node_ids: list[str], timeout: float, before: dict[str, str]
) -> bool:
    """Show each node's state and phase live until every operation started after `before`
    (each node's updated_at then) has ended: the node changed since, and is in a terminal
    state with no phase."""
    start = time.monotonic()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            items = [_check(http.get(f"/v1/nodes/{n}")) for n in node_ids]
            live.update(_table(items))
            changed = [n["updated_at"] != before[n["id"]] for n in items]
            done = all(
                moved
                and n["state"] in TERMINAL_STATES
                and not (n.get("operation") or {}).get("phase")
                for n, moved in zip(items, changed, strict=True)
            )
            if done:
                return all(n["state"] != "failed" for n in items)
            waited = time.monotonic() - start
            if waited > timeout or (waited > CLAIM_GRACE_SECONDS and not all(changed)):
                console.print("[red]not done: see the Temporal UI for the workflows[/red]")
                return False
            time.sleep(0.5)


def _operate(
    api_url: str,
    node_ids: list[str],
    operation: str,
    body: dict[str, Any] | None,
    *,
    wait: bool,
    timeout: float,
) -> None:
    """Start `operation` on each node, then (with `wait`) follow them until all have ended."""
    with _client(api_url) as http:
        before = _updated(http, node_ids)
        for node_id in node_ids:
            accepted = _check(http.post(f"/v1/nodes/{node_id}/{operation}", json=body))
            console.print(f"{node_id}: {operation} started, workflow {accepted['workflow_id']}")
        if wait and not _follow(http, node_ids, timeout, before):
            raise typer.Exit(1)


@app.command()
def provision(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    image: Annotated[str, typer.Option(help="Golden image name")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Provision nodes with a golden image."""
    _operate(api_url, node_ids, "provision", {"image": image}, wait=wait, timeout=timeout)


@app.command()
def release(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 600,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Release nodes: power off, wipe their disks (cleaning), make them available."""
    _operate(api_url, node_ids, "release", None, wait=wait, timeout=timeout)


@app.command()
def commission(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Inspect free nodes again and check them against their SKU (maintenance if they differ)."""
    _operate(api_url, node_ids, "commission", None, wait=wait, timeout=timeout)


@app.command()
def reboot(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    hard: Annotated[bool, typer.Option(help="Power off at once, no ACPI power button")] = False,
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Reboot active nodes (a stateless image's boot is verified again)."""
    _operate(api_url, node_ids, "reboot", {"hard": hard}, wait=wait, timeout=timeout)


@app.command()
def rescue(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    hard: Annotated[bool, typer.Option(help="Power off at once, no ACPI power button")] = False,
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Boot active nodes into the rescue ramdisk (the tenant's SSH keys, disks untouched)."""
    _operate(api_url, node_ids, "rescue", {"hard": hard}, wait=wait, timeout=timeout)


@app.command()
def unrescue(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    wait: Annotated[bool, typer.Option(help="Follow progress live")] = True,
    timeout: float = 1800,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Boot nodes in rescue back into their image."""
    _operate(api_url, node_ids, "unrescue", None, wait=wait, timeout=timeout)


@app.command()
def maintenance(
    node_ids: Annotated[list[str], typer.Argument(help="Node ids")],
    reason: Annotated[str | None, typer.Option(help="Why: takes free nodes out of service")] = None,
    done: Annotated[bool, typer.Option("--done", help="Return them to service")] = False,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Take free nodes out of service with a reason, or return them to service (--done)."""
    if done == (reason is not None):
        raise typer.BadParameter("give either --reason or --done")
    with _client(api_url) as http:
        for node_id in node_ids:
            url = f"/v1/nodes/{node_id}/maintenance"
            reply = http.delete(url) if done else http.put(url, json={"reason": reason})
            node = _check(reply)
            console.print(f"{node['id']}: {node['state']}")


@app.command()
def discovered(
    dismiss: Annotated[list[str] | None, typer.Option(help="MACs to dismiss (repeatable)")] = None,
    api_url: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """List the MACs that network booted without a node (enroll one to accept it)."""
    with _client(api_url) as http:
        for mac in dismiss or []:
            reply = http.delete(f"/v1/discovered-nodes/{mac}")
            if reply.status_code != 204:
                _check(reply)
            console.print(f"dismissed {mac}")
        if dismiss:
            return
        table = Table("MAC", "FIRST SEEN", "LAST SEEN", "BOOTS", "FROM")
        for item in _check(http.get("/v1/discovered-nodes", params={"limit": 1000}))["items"]:
            table.add_row(
                item["mac"], item["first_seen"], item["last_seen"], str(item["boots"]),
                item["last_address"] or "",
            )  # fmt: skip
        console.print(table)
