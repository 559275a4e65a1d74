"""Session-wide peers: one embedded PostgreSQL and one Temporal dev server for the whole run.

Each test module then gets its own database schema and Temporal namespace (tests/platform.py).
Under pytest-xdist (`make test` runs two workers, one module at a time each) the controller
starts the peers once and hands their addresses to the workers, so a run still starts each peer
once. A peer that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cli import devstack

# Pinned; another port lets a second test session run beside the first.
TEMPORAL_PORT = int(os.environ.get("METALPLANE_TEST_TEMPORAL_PORT", "17233"))


@dataclass
class SharedPeers:
    """The peers the xdist controller started for its workers."""

    directory: Path
    postgres: devstack.EmbeddedPostgres | None = None
    temporal: Any = None  # the dev server's process
    addresses: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.temporal is not None:
            devstack.stop_process(self.temporal)
        if self.postgres is not None:
            self.postgres.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _start_temporal(data_dir: Path) -> Any:
    return devstack.start_temporal(
        data_dir, port=TEMPORAL_PORT, ui_port=None,
        http_port=TEMPORAL_PORT + 10, metrics_port=TEMPORAL_PORT + 11,
    )  # fmt: skip


def _is_xdist_controller(config: pytest.Config) -> bool:
    workers = getattr(config.option, "numprocesses", None)
    return not hasattr(config, "workerinput") and bool(workers)


def pytest_configure(config: pytest.Config) -> None:
    if not _is_xdist_controller(config):
        return
    peers = SharedPeers(Path(tempfile.mkdtemp(prefix="metalplane-peers-")))
    config.stash[_SHARED] = peers
    try:
        peers.postgres = devstack.start_postgres(peers.directory / "postgres")
        peers.addresses["postgres_url"] = peers.postgres.url
        peers.temporal = _start_temporal(peers.directory / "temporal")
        address = f"127.0.0.1:{TEMPORAL_PORT}"
        asyncio.run(devstack.wait_for_temporal(address, timeout=60))
        peers.addresses["temporal_address"] = address
    except Exception as error:  # the workers' fixtures then fail with this reason
        peers.addresses["peer_error"] = f"{type(error).__name__}: {error}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    peers = node.config.stash.get(_SHARED, None)
    if peers is not None:
        node.workerinput.update(peers.addresses)


def pytest_unconfigure(config: pytest.Config) -> None:
    peers = config.stash.get(_SHARED, None)
    if peers is not None:
        peers.stop()


_SHARED = pytest.StashKey[SharedPeers]()

# The slowest modules first (measured, longest first), so that the workers, which take modules
# in collection order (--no-loadscope-reorder), finish together instead of one running the
# longest module alone at the end.
SLOWEST_FIRST = (
    "test_fabric_network", "test_clusters", "test_api_schema", "test_qemu_node",
    "test_fabric_uml", "test_up", "test_provision", "test_fabric_linux", "test_networks",
    "test_isolation_matrix", "test_boot_secrets", "test_worker_crash",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep order


def _from_controller(config: pytest.Config, key: str) -> str | None:
    """A peer address the xdist controller handed over, or None when running without xdist."""
    handed = getattr(config, "workerinput", None)
    if handed is None or ("postgres_url" not in handed and "peer_error" not in handed):
        return None
    if "peer_error" in handed:
        pytest.fail(f"the controller could not start the shared peers: {handed['peer_error']}")
    return str(handed[key])


@pytest.fixture(scope="session")
def peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest, peers_dir: Path) -> Iterator[str]:
    handed = _from_controller(request.config, "postgres_url")
    if handed is not None:
        yield handed
        return
    server = devstack.start_postgres(peers_dir / "postgres")
    yield server.url
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_address(request: pytest.FixtureRequest, peers_dir: Path) -> AsyncIterator[str]:
    """The dev server's address, once it answers."""
    handed = _from_controller(request.config, "temporal_address")
    if handed is not None:
        yield handed
        return
    process = _start_temporal(peers_dir / "temporal")
    address = f"127.0.0.1:{TEMPORAL_PORT}"
    try:
        await devstack.wait_for_temporal(address, timeout=60)
        yield address
    finally:
        devstack.stop_process(process)
