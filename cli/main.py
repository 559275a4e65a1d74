"""The `metalplane` command."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from core.settings import Settings

from . import nodes_cmd
from .login import login

app = typer.Typer(no_args_is_help=True, help="metalplane: bare-metal GPU cloud control plane")
app.add_typer(nodes_cmd.app, name="nodes")
app.command()(login)


def _settings(data_dir: Path | None) -> Settings:
    if data_dir is not None:
        os.environ["METALPLANE_DATA_DIR"] = str(data_dir)
    return Settings()


def _logging(request_ids: bool = False) -> None:
    """`request_ids`: the API's records carry the id of the request they were made in."""
    detail = " [%(request_id)s]" if request_ids else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(name)s %(levelname)s{detail} %(message)s"
    )


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(help="State dir (default .metalplane)")] = None,
    nodes: Annotated[int, typer.Option(help="Simulated lab nodes")] = 8,
    boot_delay: Annotated[float, typer.Option(help="Simulated seconds to boot")] = 2.0,
    lab_port: Annotated[int, typer.Option(help="Lab control port; Redfish BMC is +1")] = 8100,
    ipmi_base_port: Annotated[int, typer.Option(help="UDP port of the first IPMI BMC")] = 9001,
    network_lab: Annotated[
        bool, typer.Option(help="Simulated network fabric for the lab (needs root)")
    ] = True,
    qemu_nodes: Annotated[
        int, typer.Option(help="More lab nodes that are QEMU VMs really PXE booting (lab-qemu)")
    ] = 0,
) -> None:
    """Run the whole platform on embedded defaults (Ctrl-C stops it)."""
    from .up import LabOptions, run

    _logging()
    lab = LabOptions(
        nodes=nodes,
        boot_delay=boot_delay,
        control_port=lab_port,
        redfish_port=lab_port + 1,
        ipmi_base_port=ipmi_base_port,
        network_lab=network_lab,
        qemu_nodes=qemu_nodes,
    )
    asyncio.run(run(_settings(data_dir), lab))


@app.command()
def migrate() -> None:
    """Apply the inventory's database migrations."""
    from inventory.migrate import upgrade

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("METALPLANE_DATABASE_URL is not set")
    upgrade(settings.database_url, settings.database_schema)


@app.command()
def api() -> None:
    """Serve the API and the boot service."""
    import uvicorn

    from api.app import create_app
    from api.request_log import install_record_factory

    install_record_factory()
    _logging(request_ids=True)
    settings = Settings()
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning"
    )


@app.command()
def worker(
    queue: Annotated[str, typer.Argument(help="baremetal | inventory | network | cluster")],
) -> None:
    """Run the worker of one domain task queue."""
    _logging()
    if queue == "baremetal":
        from workers.baremetal import main
    elif queue == "inventory":
        from workers.inventory import main
    elif queue == "network":
        from workers.network import main
    elif queue == "cluster":
        from workers.cluster import main
    else:
        raise typer.BadParameter(f"unknown task queue {queue!r}")
    asyncio.run(main())


@app.command("console-relay")
def console_relay() -> None:
    """Hold every node's serial console for the API (run exactly one)."""
    from consoles.__main__ import main

    _logging()
    main()


@app.command()
def token(
    role: Annotated[list[str], typer.Option(help="Role(s) to grant (repeat for several)")],
    tenant: Annotated[str | None, typer.Option(help="Tenant claim")] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            help="Subject claim; default derived from the roles and tenant: 'dev-' + the"
            " sorted roles joined by '+', then '@TENANT' (e.g. dev-operator,"
            " dev-tenant-admin@acme)"
        ),
    ] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 3600,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data dir of the running platform (default METALPLANE_DATA_DIR, else .metalplane)"
        ),
    ] = None,
) -> None:
    """Print a token signed by the local dev issuer (the token alone on stdout).

    Signs with the key the platform (`metalplane up`/`api`) keeps in its data dir.

    Never makes a key: without one it prints nothing and exits 1 (a new key is unknown to the API).

    Subject: --subject, else one per roles and tenant, e.g. dev-operator, dev-tenant-admin@acme.
    """
    from identity.dev_issuer import SigningKeyMissingError, default_subject, mint

    settings = _settings(data_dir)
    try:
        signed = mint(
            settings.dev_issuer_key_file,
            issuer=settings.issuer_url,
            audience=settings.jwt_audience,
            subject=subject or default_subject(role, tenant),
            roles=role,
            tenant=tenant,
            ttl_seconds=ttl,
        )
    except SigningKeyMissingError as missing:
        # A fresh key would sign tokens the running API refuses (401 unknown signing key).
        typer.echo(
            f"error: no dev issuer signing key at {missing.private_key_file.resolve()}.\n"
            "It is made by the platform (`metalplane up` or `metalplane api`) in its data dir;"
            " start the platform first, or point at its data dir with --data-dir DIR or"
            " METALPLANE_DATA_DIR=DIR.",
            err=True,
        )
        raise typer.Exit(code=1) from None
    typer.echo(signed)
