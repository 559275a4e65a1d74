"""The expensive peers of a benchmark run: an embedded PostgreSQL and a Temporal dev server in a
fresh work directory, removed afterwards (unless BENCH_KEEP is set)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import devstack

TEMPORAL_PORT = 17900


@dataclass
class Peers:
    work: Path
    postgres: Any  # devstack's embedded server: .url, .server.get_pid()
    temporal: Any  # the dev server's process
    temporal_address: str


@contextlib.asynccontextmanager
async def embedded_peers() -> AsyncIterator[Peers]:
    work = Path(tempfile.mkdtemp(prefix="metalplane-bench-"))
    postgres = devstack.start_postgres(work / "postgres")
    temporal = devstack.start_temporal(
        work / "temporal", port=TEMPORAL_PORT, ui_port=None,
        http_port=TEMPORAL_PORT + 10, metrics_port=TEMPORAL_PORT + 11,
    )  # fmt: skip
    try:
        address = f"127.0.0.1:{TEMPORAL_PORT}"
        await devstack.wait_for_temporal(address)
        yield Peers(work, postgres, temporal, address)
    finally:
        devstack.stop_process(temporal)
        postgres.stop()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(work, ignore_errors=True)


RESULTS = Path(__file__).parent / "results"


def save(result: dict[str, Any], name: str) -> None:
    """bench/results/<name>.json, and the same on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
