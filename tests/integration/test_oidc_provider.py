"""Tokens from a real OpenID provider (npm oidc-provider, RS256 JWT access tokens) authenticate
API calls with the roles and tenant the provider put in them: a client's own (client credentials
grant) or, by the device authorization grant, those of the user who signed in and approved on the
provider's own pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

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
    {"client_id": "metalplane-cli", "device": True},  # public, device flow only
]  # fmt: skip
USERS = [{"account": "olivia", "roles": ["operator"], "tenant": None}]  # device-flow sign-ins
PLATFORM_PORTS = Ports(api=18250, lab_control=18350, redfish=18351, ipmi_base=19600)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = shutil.which("node")
    assert node, "node is not installed (make test installs it)"
    assert (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(), "run `make test`"
    devstack.ensure_port_free(PORT)
    clients = tmp_path_factory.mktemp("oidc") / "clients.json"
    clients.write_text(json.dumps({"clients": CLIENTS, "users": USERS}))
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
    async with platform.api(tenant_admin) as api:  # its tenant's nodes only: it holds none
        own = await api.get("/v1/nodes")
        assert own.status_code == 200 and own.json()["items"] == [], own.text
        denied = await api.get("/v1/switches")
        assert denied.status_code == 403, denied.text
    # With an external issuer configured, the dev issuer is neither served nor trusted.
    async with platform.api() as api:
        assert (await api.get("/v1/nodes")).status_code == 401
        assert (await api.get("/dev-issuer/jwks.json")).status_code == 404


@dataclass
class Cli:
    """The `metalplane` command, run as a user would, with its own config dir."""

    env: dict[str, str]
    credentials: Path
    path: str = field(default_factory=lambda: devstack.venv_bin("metalplane"))

    async def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the API under test serves on this event loop.
        return await asyncio.to_thread(
            subprocess.run, [self.path, *args], capture_output=True, text=True, timeout=60,
            env={**self.env, **env},
        )  # fmt: skip

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self.path, *args, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip


@pytest.fixture
def cli(platform: Platform, tmp_path: Path) -> Cli:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "METALPLANE_DATA_DIR": str(tmp_path / "no-dev-issuer"),  # no local dev token to fall on
        "METALPLANE_API_URL": platform.api_url,
    }
    return Cli(env, credentials=tmp_path / "config" / "metalplane" / "credentials.json")


async def test_cli_login_stores_a_token_the_other_commands_use(cli: Cli) -> None:
    refused = await cli.run("nodes", "list")
    assert refused.returncode != 0 and "metalplane login" in refused.stderr
    wrong = await cli.run("login", "--issuer", ISSUER, "--client-id", "ops", "--client-secret", "x")
    assert wrong.returncode == 1 and "login failed" in wrong.stderr
    secret = next(c["client_secret"] for c in CLIENTS if c["client_id"] == "ops")
    login = await cli.run(
        "login", "--issuer", ISSUER, "--client-id", "ops", METALPLANE_CLIENT_SECRET=str(secret)
    )
    assert login.returncode == 0, login.stderr
    assert cli.credentials.stat().st_mode & 0o777 == 0o600
    listed = await cli.run("nodes", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "lab-001" in listed.stdout


# The device flow: the CLI prints a link and a code; the test is the user's browser.


@dataclass
class Form:
    action: str
    fields: dict[str, str]  # named inputs with their values, hidden ones included
    buttons: dict[str, str]  # named submit buttons (inside the form or tied by form="id")


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, Form] = {}
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._open = Form(named.get("action", ""), {}, {})
            self.forms[named.get("id") or f"#{len(self.forms)}"] = self._open
        elif tag in ("input", "button") and "name" in named:
            owner = self.forms.get(named["form"]) if "form" in named else self._open
            assert owner is not None, f"a {tag} outside any form: {named}"
            (owner.buttons if tag == "button" else owner.fields)[named["name"]] = named.get(
                "value", ""
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def the_form(page: httpx.Response) -> Form:
    parser = _FormParser()
    parser.feed(page.text)
    assert len(parser.forms) == 1, f"expected one form on {page.url}: {page.text[:2000]}"
    return next(iter(parser.forms.values()))


async def submit(
    browser: httpx.AsyncClient,
    page: httpx.Response,
    typed: dict[str, str] | None = None,
    press: str | None = None,
) -> httpx.Response:
    """Submit the page's form as a browser does: its fields, `typed` into its inputs, and the
    value of the button pressed when it has a name."""
    form = the_form(page)
    typed = typed or {}
    assert set(typed) <= set(form.fields), f"no such inputs {set(typed) - set(form.fields)}"
    pressed = {press: form.buttons[press]} if press else {}
    reply = await browser.post(
        urljoin(str(page.url), form.action), data={**form.fields, **typed, **pressed}
    )
    assert reply.status_code == 200, reply.text[:2000]
    return reply


@contextlib.asynccontextmanager
async def device_login(cli: Cli) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    """`metalplane login --device` running, with the link and the code it printed."""
    process = await cli.start(
        "login", "--device", "--issuer", ISSUER, "--client-id", "metalplane-cli", "--scope", "api"
    )
    try:
        assert process.stderr is not None
        printed: list[str] = []
        while not printed or not printed[-1].startswith("Waiting"):
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, f"login ended before waiting: {''.join(printed)}"
            printed.append(line)
        link, code = (line.strip() for line in printed if line.startswith("  "))
        assert "shows the code" in "".join(printed)
        yield process, link, code
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def browser() -> httpx.AsyncClient:
    """The user's browser: keeps the provider's cookies, follows its redirects."""
    return httpx.AsyncClient(follow_redirects=True, timeout=10)


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_device_login_approved_in_the_browser_gives_the_users_token(cli: Cli) -> None:
    async with device_login(cli) as (process, link, code), browser() as user:
        page = await user.get(link)  # a form that submits itself (the code is in the link)
        page = await submit(user, page)
        assert "Confirm Device" in page.text and code in page.text
        assert the_form(page).buttons == {"abort": "yes"}
        page = await submit(user, page)  # Continue
        assert the_form(page).fields["prompt"] == "login"
        page = await submit(user, page, {"login": "olivia", "password": "any"})
        assert the_form(page).fields["prompt"] == "consent"  # the API's scope, for this client
        page = await submit(user, page)
        assert "Sign-in Success" in page.text
        returncode, stdout, stderr = await finish(process)
    assert returncode == 0, stderr
    assert stdout == "" and "logged in" in stderr

    assert cli.credentials.stat().st_mode & 0o777 == 0o600
    token = json.loads(cli.credentials.read_text())["access_token"]
    principal = await OidcValidator(ISSUER, audience=AUDIENCE).validate(token)
    assert (principal.subject, principal.roles, principal.tenant) == ("olivia", {"operator"}, None)
    listed = await cli.run("nodes", "list")  # the stored token, against the platform's API
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "lab-001" in listed.stdout


async def test_device_login_aborted_by_the_user_fails_and_stores_nothing(cli: Cli) -> None:
    async with device_login(cli) as (process, link, code), browser() as user:
        page = await submit(user, await user.get(link))
        assert code in page.text
        page = await submit(user, page, press="abort")  # "[ Abort ]": not my device
        assert "interrupted" in page.text
        returncode, stdout, stderr = await finish(process)
    assert returncode == 1, stderr
    assert "login failed: the sign-in was denied" in stderr, stderr
    assert stdout == "" and not cli.credentials.exists()
