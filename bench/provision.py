"""Benchmark: provision N simulated nodes at once (zero BMC and boot delay) on the embedded
stack and write nodes/s, control-plane CPU seconds per node and p50/p95 per-node duration to
bench/results/provision-<N>.json.

The control plane is this process (API and both workers, in-process), the Temporal dev server
and PostgreSQL; the lab (simulated BMCs and nodes) runs in its own process and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from cli import devstack
from tests.platform import Ports, running_platform

RESULTS = Path(__file__).parent / "results"
PORTS = Ports(api=18900, lab_control=18901, redfish=18902, ipmi_base=20000)
TEMPORAL_PORT = 17900


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def run(nodes: int, protocols: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="metalplane-bench-"))
    postgres = devstack.start_postgres(work / "postgres")
    temporal = devstack.start_temporal(
        work / "temporal", port=TEMPORAL_PORT, ui_port=None,
        http_port=TEMPORAL_PORT + 10, metrics_port=TEMPORAL_PORT + 11,
    )  # fmt: skip
    try:
        await devstack.wait_for_temporal(f"127.0.0.1:{TEMPORAL_PORT}")
        async with running_platform(
            name="bench", postgres_url=postgres.url,
            temporal_address=f"127.0.0.1:{TEMPORAL_PORT}", data_dir=work / "platform",
            ports=PORTS, nodes=nodes, boot_delay=0.0, protocols=protocols,
            phone_home_timeout=600,
        ) as platform:  # fmt: skip
            ids = await platform.enroll_lab()
            pg_pid = postgres.server.get_pid()  # type: ignore[attr-defined]
            control_plane = [psutil.Process(), psutil.Process(temporal.pid)]
            if pg_pid:
                control_plane.append(psutil.Process(pg_pid))
            cpu_before = _cpu_seconds(control_plane)
            started = time.monotonic()
            durations: dict[str, float] = {}
            async with platform.api() as api:
                starts: dict[str, float] = {}

                async def start(node_id: str) -> None:
                    starts[node_id] = time.monotonic()
                    reply = await api.post(
                        f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"}
                    )
                    reply.raise_for_status()

                await asyncio.gather(*(start(n) for n in ids))
                pending = set(ids)
                failed: list[str] = []
                while pending:
                    listing = (await api.get("/v1/nodes", params={"limit": 1000})).json()
                    now = time.monotonic()
                    for node in listing["items"]:
                        if node["id"] in pending and node["state"] in ("active", "failed"):
                            pending.discard(node["id"])
                            durations[node["id"]] = now - starts[node["id"]]
                            if node["state"] == "failed":
                                failed.append(f"{node['id']}: {node['last_error']}")
                    await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            cpu = _cpu_seconds(control_plane) - cpu_before
    finally:
        devstack.stop_process(temporal)
        postgres.stop()
    values = sorted(durations.values())
    return {
        "scenario": "provision",
        "nodes": nodes,
        "protocols": protocols,
        "failed": failed,
        "elapsed_seconds": round(elapsed, 2),
        "nodes_per_second": round(nodes / elapsed, 2),
        "control_plane_cpu_seconds_per_node": round(cpu / nodes, 4),
        "per_node_seconds_p50": round(statistics.median(values), 2),
        "per_node_seconds_p95": round(values[int(0.95 * (len(values) - 1))], 2),
        "machine": {"cpus": os.cpu_count(), "python": host.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    # IPMI is left out by default: ~100 concurrent pyghmi sessions in one worker process
    # stall (see README, Known limits); pass --protocols redfish,ipmi to measure it.
    parser.add_argument("--protocols", default="redfish")
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes, args.protocols))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"provision-{args.nodes}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
