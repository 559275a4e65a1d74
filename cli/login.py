"""`metalplane login`: get a token from the OIDC issuer and keep it for the other CLI commands in
the credentials file (0600). Two grants: client credentials (a confidential client and its
secret) or, with `--device`, the device authorization grant (RFC 8628: a person approves the
login in a browser, on any device)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_POLL_INTERVAL = 5.0  # seconds, when the issuer names none (RFC 8628 3.2)
SLOW_DOWN_STEP = 5.0  # seconds added to the interval at each `slow_down` (RFC 8628 3.5)


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


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _discover(http: httpx.Client, issuer: str) -> dict[str, Any]:
    try:
        discovery = http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        discovery.raise_for_status()
        metadata = discovery.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _fail(f"no discovery document at {issuer}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise _fail(f"the discovery document of {issuer} is not a JSON object")
    return metadata


def _token_endpoint(metadata: dict[str, Any], issuer: str) -> str:
    endpoint = metadata.get("token_endpoint")
    if not endpoint:
        raise _fail(f"{issuer} has no token endpoint (the dev issuer has none: use `token`)")
    return str(endpoint)


def _post(
    http: httpx.Client, url: str, form: dict[str, str], auth: tuple[str, str] | None = None
) -> httpx.Response:
    try:
        return http.post(url, data=form, auth=auth)
    except httpx.HTTPError as exc:
        raise _fail(f"{url}: {exc}") from exc


def _json_body(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refused(reply: httpx.Response) -> typer.Exit:
    return _fail(f"{reply.request.url} answered {reply.status_code}: {reply.text[:200]}")


def _granted(reply: httpx.Response) -> dict[str, Any]:
    granted = _json_body(reply)
    if reply.status_code != 200 or "access_token" not in granted:
        raise _refused(reply)
    return granted


def _store(issuer: str, granted: dict[str, Any]) -> Path:
    """Keep the token for the other commands, readable by its owner only."""
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
    return path


# Client credentials grant (RFC 6749 4.4)


def _client_credentials_grant(
    http: httpx.Client, endpoint: str, client_id: str, secret: str, scope: str | None
) -> dict[str, Any]:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    return _granted(_post(http, endpoint, form, auth=(client_id, secret)))


# Device authorization grant (RFC 8628)


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DeviceAuthorization:
        return cls(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=float(body["expires_in"]),
            interval=float(body.get("interval") or DEFAULT_POLL_INTERVAL),
        )


def _authorize_device(
    http: httpx.Client, endpoint: str, client_id: str, scope: str | None
) -> DeviceAuthorization:
    form = {"client_id": client_id, **({"scope": scope} if scope else {})}
    reply = _post(http, endpoint, form)
    if reply.status_code != 200:
        raise _refused(reply)
    try:
        return DeviceAuthorization.parse(_json_body(reply))
    except (KeyError, ValueError) as exc:
        raise _fail(f"{endpoint} answered no usable device authorization ({exc!r})") from exc


def _show_instructions(authorization: DeviceAuthorization) -> None:
    complete = authorization.verification_uri_complete
    minutes = max(1, round(authorization.expires_in / 60))
    _say("To sign in, open this page in a browser:")
    _say(f"  {complete or authorization.verification_uri}")
    _say("and check that it shows the code:" if complete else "and enter the code:")
    _say(f"  {authorization.user_code}")
    _say(f"Waiting for your approval (the code expires in {minutes} min; Ctrl-C gives up)...")


def _device_error(reply: httpx.Response) -> typer.Exit:
    body = _json_body(reply)
    error, description = body.get("error"), body.get("error_description")
    detail = f" ({description})" if description else ""
    if error == "access_denied":
        return _fail(f"the sign-in was denied at the issuer{detail}")
    if error == "expired_token":
        return _fail("the code expired before it was approved; run `metalplane login` again")
    return _refused(reply)


def _poll_for_token(
    http: httpx.Client, endpoint: str, client_id: str, authorization: DeviceAuthorization
) -> dict[str, Any]:
    """Ask for the token every `interval` seconds until the user approves, denies or the code
    expires; `slow_down` lengthens the interval by 5 s for good."""
    form = {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": authorization.device_code,
        "client_id": client_id,
    }
    deadline = time.monotonic() + authorization.expires_in
    interval = authorization.interval
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(interval, remaining))
        reply = _post(http, endpoint, form)
        if reply.status_code == 200:
            return _granted(reply)
        error = _json_body(reply).get("error")
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
        elif error != "authorization_pending":
            raise _device_error(reply)
    raise _fail("the code expired before it was approved; run `metalplane login` again")


def _device_grant(
    http: httpx.Client, metadata: dict[str, Any], issuer: str, client_id: str, scope: str | None
) -> dict[str, Any]:
    endpoint = metadata.get("device_authorization_endpoint")
    if not endpoint:
        raise _fail(
            f"{issuer} does not offer the device flow (no device_authorization_endpoint in its "
            "discovery document); log in with a client secret instead (without --device)"
        )
    token_endpoint = _token_endpoint(metadata, issuer)
    authorization = _authorize_device(http, str(endpoint), client_id, scope)
    _show_instructions(authorization)
    return _poll_for_token(http, token_endpoint, client_id, authorization)


def login(
    issuer: Annotated[str, typer.Option(envvar="METALPLANE_OIDC_ISSUER", help="Issuer URL")],
    client_id: Annotated[str, typer.Option(envvar="METALPLANE_CLIENT_ID")],
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="METALPLANE_CLIENT_SECRET",
            show_default=False,
            help="Secret of a confidential client (prompted when missing; not with --device)",
        ),
    ] = None,
    device: Annotated[
        bool,
        typer.Option(
            "--device",
            help="Sign in as yourself in a browser (device authorization grant, RFC 8628) "
            "with a public client, instead of the client credentials grant",
        ),
    ] = False,
    scope: Annotated[
        str | None, typer.Option(help="Scopes to ask for (the device flow usually needs one)")
    ] = None,
) -> None:
    """Get a token from the issuer and store it (0600) for the other commands.

    Default: the client credentials grant, for a service or CI (a confidential
    client and its secret).

    --device: you sign in yourself, in a browser (device authorization grant,
    RFC 8628). The command prints a link and a code on stderr: open the link on
    any device, check that the page shows the same code, sign in and approve.
    The command waits for that, then stores your token; it fails if you deny or
    the code expires. For a public client (no secret) of an issuer whose
    discovery document has a device_authorization_endpoint.
    """
    if device and client_secret:
        raise _fail("--device is for public clients: drop the client secret")
    with httpx.Client(timeout=15) as http:
        metadata = _discover(http, issuer)
        if device:
            granted = _device_grant(http, metadata, issuer, client_id, scope)
        else:
            endpoint = _token_endpoint(metadata, issuer)
            secret = client_secret or typer.prompt("Client secret", hide_input=True, err=True)
            granted = _client_credentials_grant(http, endpoint, client_id, secret, scope)
    path = _store(issuer, granted)
    _say(f"logged in; token stored in {path}")
