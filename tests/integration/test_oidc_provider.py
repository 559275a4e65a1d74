"""Tokens from a real OpenID provider (npm oidc-provider, client credentials grant, RS256 JWT
access tokens) authenticate API calls with the roles and tenant the provider put in them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cli import devstack
from identity.oidc import OidcValidator
from tests.platform import Platform, Ports, running_platform

PORT = 18151
ISSUER = f"http://127.0.0.1:{PORT}"
AUDIENCE = "urn:metalplane:api"  # oidc-provider's resource indicators must be absolute URIs
PROVIDER_DIR = Path(__file__).resolve().parents[2] / "lab" / "oidc"
CLIENTS = [
    {"client_id": "ops", "client_secret": "ops-secret-0123456789abcdef",
     "roles": ["operator"], "tenant": None},
    {"client_id": "acme-admin", "client_secret": "acme-secret-0123456789abcdef",
     "roles": ["tenant-admin"], "tenant": "acme"},
]  # fmt: skip
PLATFORM_PORTS = Ports(api=18250, lab_control=18350, redfish=18351, ipmi_base=19600)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = shutil.which("node")
    assert node, "node is not installed (make test installs it)"
    assert (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(), "run `make test`"
    devstack.ensure_port_free(PORT)
    clients = tmp_path_factory.mktemp("oidc") / "clients.json"
    clients.write_text(json.dumps(CLIENTS))
    log = open(clients.with_name("provider.log"), "ab")
    process = subprocess.Popen(
        [node, "provider.mjs", str(PORT), AUDIENCE, str(clients)],
        cwd=PROVIDER_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(100):
            assert process.poll() is None, "oidc-provider exited; see provider.log"
            try:
                httpx.get(f"{ISSUER}/.well-known/openid-configuration", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield ISSUER
    finally:
        devstack.stop_process(process)


async def client_credentials_token(client_id: str) -> str:
    secret = next(c["client_secret"] for c in CLIENTS if c["client_id"] == client_id)
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(
            f"{ISSUER}/token",
            data={"grant_type": "client_credentials", "scope": "api"},
            auth=(str(client_id), str(secret)),
        )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


async def test_provider_tokens_carry_roles_and_tenant(provider: str) -> None:
    validator = OidcValidator(provider, audience=AUDIENCE)
    operator = await validator.validate(await client_credentials_token("ops"))
    assert (operator.subject, operator.roles, operator.tenant) == ("ops", {"operator"}, None)
    admin = await validator.validate(await client_credentials_token("acme-admin"))
    assert (admin.roles, admin.tenant) == ({"tenant-admin"}, "acme")


@pytest_asyncio.fixture(scope="module")
async def platform(
    provider: str,
    postgres_url: str,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_oidc", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("oidc-platform"), ports=PLATFORM_PORTS, nodes=1,
        oidc_issuer=provider, jwt_audience=AUDIENCE,
    ) as running:  # fmt: skip
        async with running.api(await client_credentials_token("ops")) as api:
            for record in await running.lab_nodes():
                assert (await api.post("/v1/nodes", json=record)).status_code == 201
        yield running


async def test_the_api_accepts_the_providers_tokens_by_role(platform: Platform) -> None:
    ops, tenant_admin = await asyncio.gather(
        client_credentials_token("ops"), client_credentials_token("acme-admin")
    )
    async with platform.api(ops) as api:
        assert (await api.get("/v1/nodes")).status_code == 200
    async with platform.api(tenant_admin) as api:
        denied = await api.get("/v1/nodes")
        assert denied.status_code == 403, denied.text
    # With an external issuer configured, the dev issuer is neither served nor trusted.
    async with platform.api() as api:
        assert (await api.get("/v1/nodes")).status_code == 401
        assert (await api.get("/dev-issuer/jwks.json")).status_code == 404


async def test_cli_login_stores_a_token_the_other_commands_use(
    platform: Platform, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "METALPLANE_DATA_DIR": str(tmp_path / "no-dev-issuer"),  # no local dev token to fall on
        "METALPLANE_API_URL": platform.api_url,
    }
    metalplane = devstack.venv_bin("metalplane")

    async def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        # In a thread: the API under test serves on this event loop.
        return await asyncio.to_thread(
            subprocess.run, [metalplane, *args], capture_output=True, text=True, timeout=60,
            **{"env": env, **kwargs},
        )  # fmt: skip

    refused = await run("nodes", "list")
    assert refused.returncode != 0 and "metalplane login" in refused.stderr
    wrong = await run("login", "--issuer", ISSUER, "--client-id", "ops", "--client-secret", "x")
    assert wrong.returncode == 1 and "login failed" in wrong.stderr
    secret = next(c["client_secret"] for c in CLIENTS if c["client_id"] == "ops")
    login = await run(
        "login", "--issuer", ISSUER, "--client-id", "ops",
        env={**env, "METALPLANE_CLIENT_SECRET": str(secret)},
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    stored = tmp_path / "config" / "metalplane" / "credentials.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    listed = await run("nodes", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "lab-001" in listed.stdout
