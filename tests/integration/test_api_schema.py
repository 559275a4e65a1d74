"""The OpenAPI document is accurate: schemathesis generates requests from it, with valid tokens,
against the running API and finds no 5xx, no undeclared status code or content type and no
response that violates its schema.

`GET /v1/events` is left out: it is an endless stream by design (tests/integration/
test_events.py covers it), and a fuzzer waits for responses to end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.platform import Platform, Ports, running_platform

ROOT = Path(__file__).resolve().parents[2]
HOOKS = "tests.integration.schemathesis_hooks"  # fresh Idempotency-Keys in stateful sequences
PORTS = Ports(api=18230, lab_control=18330, redfish=18331, ipmi_base=19630)
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "use_after_free", "ensure_resource_availability",
])  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_schema", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("schema"), ports=PORTS, nodes=2,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin")) as api:
            reply = await api.post("/v1/tenants", json={"id": "acme", "display_name": "Acme"})
            assert reply.status_code == 201, reply.text
        yield running


def schemathesis(platform: Platform, token: str, tmp: Path, *selection: str) -> None:
    """Run `st run` in a worker thread (the API serves from this process's event loop)."""
    argv = [
        str(Path(sys.executable).with_name("st")), "run", f"{platform.api_url}/openapi.json",
        "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
        "--exclude-path", "/v1/events", "--max-examples", "25", "--workers", "1",
        "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "20",
        "--seed", "1", "--no-color", *selection,
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]


async def test_as_platform_admin(platform: Platform, tmp_path: Path) -> None:
    token = platform.mint("platform-admin", subject="fuzz-admin")
    await asyncio.to_thread(schemathesis, platform, token, tmp_path)


async def test_as_tenant_admin(platform: Platform, tmp_path: Path) -> None:
    token = platform.mint("tenant-admin", tenant="acme", subject="fuzz-tenant")
    await asyncio.to_thread(
        schemathesis, platform, token, tmp_path, "--include-path-regex", "^/v1/(ssh-keys|tenants)"
    )
