"""Session-wide peers: one embedded PostgreSQL and one Temporal dev server for the whole run.

Each test module then gets its own database schema and Temporal namespace (tests/platform.py).
A peer that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cli import devstack

# Pinned; another port lets a second test session run beside the first.
TEMPORAL_PORT = int(os.environ.get("METALPLANE_TEST_TEMPORAL_PORT", "17233"))


@pytest.fixture(scope="session")
def peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def postgres_url(peers_dir: Path) -> Iterator[str]:
    server = devstack.start_postgres(peers_dir / "postgres")
    yield server.url
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_address(peers_dir: Path) -> AsyncIterator[str]:
    """The dev server's address, once it answers."""
    process = devstack.start_temporal(
        peers_dir / "temporal", port=TEMPORAL_PORT, ui_port=None,
        http_port=TEMPORAL_PORT + 10, metrics_port=TEMPORAL_PORT + 11,
    )  # fmt: skip
    address = f"127.0.0.1:{TEMPORAL_PORT}"
    try:
        await devstack.wait_for_temporal(address, timeout=60)
        yield address
    finally:
        devstack.stop_process(process)
