"""`metalplane login`: get a token from the OIDC issuer (client credentials grant) and keep it
for the other CLI commands in the credentials file (0600)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer


def credentials_file() -> Path:
    explicit = os.environ.get("METALPLANE_CREDENTIALS_FILE")
    if explicit:
        return Path(explicit)
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "metalplane" / "credentials.json"


def stored_token() -> str | None:
    """The token `metalplane login` stored, unless it expires within a minute."""
    path = credentials_file()
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if float(saved.get("expires_at", 0)) < time.time() + 60:
        return None
    return str(saved["access_token"])


def _fail(message: str) -> typer.Exit:
    typer.echo(f"login failed: {message}", err=True)
    return typer.Exit(1)


def login(
    issuer: Annotated[str, typer.Option(envvar="METALPLANE_OIDC_ISSUER", help="Issuer URL")],
    client_id: Annotated[str, typer.Option(envvar="METALPLANE_CLIENT_ID")],
    client_secret: Annotated[
        str,
        typer.Option(envvar="METALPLANE_CLIENT_SECRET", prompt=True, hide_input=True),
    ],
    scope: Annotated[str | None, typer.Option(help="Scopes to ask for")] = None,
) -> None:
    """Get a token with the client credentials grant and store it for the CLI."""
    with httpx.Client(timeout=15) as http:
        try:
            discovery = http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
            discovery.raise_for_status()
            endpoint = discovery.json().get("token_endpoint")
        except (httpx.HTTPError, ValueError) as exc:
            raise _fail(f"no discovery document at {issuer}: {exc}") from exc
        if not endpoint:
            raise _fail(f"{issuer} has no token endpoint (the dev issuer has none: use `token`)")
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        reply = http.post(endpoint, data=form, auth=(client_id, client_secret))
    if reply.status_code != 200:
        raise _fail(f"{endpoint} answered {reply.status_code}: {reply.text[:200]}")
    granted = reply.json()
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(
        json.dumps(
            {
                "issuer": issuer,
                "access_token": granted["access_token"],
                "expires_at": time.time() + float(granted.get("expires_in", 300)),
            }
        )
    )
    typer.echo(f"logged in; token stored in {path}", err=True)
