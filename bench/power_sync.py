"""Benchmark: the power-state sync over N simulated nodes (IPMI and Redfish BMCs, no delay) and
write each run's seconds, nodes/s and control-plane CPU seconds per node to
bench/results/power-sync-<N>.json.

The bare-metal worker runs as its own process (`metalplane worker baremetal`, which keeps the
schedule); the schedule is triggered three times: the first run records every node, the second
finds nothing new (the steady state, every 60 s in production), the third finds the ~5% of
nodes the lab powered on behind the platform's back. A run with a failed read or a wrong finding
fails the benchmark, with the worker's log. The lab's CPU is reported but not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.peers import embedded_peers
from bench.provision import _cpu_seconds, _reference_cpu_seconds, peer_processes
from core.contracts import POWER_SYNC_SCHEDULE_ID
from tests.platform import Platform, Ports, running_platform

RESULTS = Path(__file__).parent / "results"
PORTS = Ports(api=18930, lab_control=18931, redfish=18932, ipmi_base=22000)
DRIFTED_SHARE = 0.05


async def _schedule_ready(platform: Platform) -> None:
    """The worker process creates the schedule as it starts."""
    schedule = platform.client.get_schedule_handle(POWER_SYNC_SCHEDULE_ID)
    async with asyncio.timeout(60):
        while True:
            try:
                await schedule.describe()
                return
            except Exception:  # not created yet
                await asyncio.sleep(0.2)


async def run(nodes: int, concurrency: int) -> dict[str, object]:
    reference_before = _reference_cpu_seconds()
    os.environ["METALPLANE_POWER_SYNC_INTERVAL_SECONDS"] = "3600"  # triggered here instead
    os.environ["METALPLANE_POWER_SYNC_CONCURRENCY"] = str(concurrency)
    runs: list[dict[str, object]] = []
    async with embedded_peers() as peers:
        async with running_platform(
            name="bench_power", postgres_url=peers.postgres.url,
            temporal_address=peers.temporal_address, data_dir=peers.work / "platform",
            ports=PORTS, nodes=nodes, boot_delay=0.0, in_process_workers=(),
        ) as platform:  # fmt: skip
            ids = await platform.enroll_lab()
            worker = platform.start_worker_process("baremetal")
            await _schedule_ready(platform)
            processes = {
                **peer_processes(peers, platform),
                "worker_baremetal": (psutil.Process(worker.pid), False),
                "bench_client": (psutil.Process(), False),
            }
            drifted = ids[:: round(1 / DRIFTED_SHARE) + 1]  # an odd step: IPMI and Redfish nodes
            for name in ("first", "steady", "drift"):
                if name == "drift":
                    for node_id in drifted:
                        await platform.lab_put(f"/lab/nodes/{node_id}/power", {"state": "on"})
                cpu_before = _cpu_seconds(processes)
                started = time.monotonic()
                summary = await (await platform.trigger_power_sync()).result()
                elapsed = time.monotonic() - started
                cpu_after = _cpu_seconds(processes)
                cpu = {k: cpu_after[k] - cpu_before[k] for k in processes}
                wrong = (
                    summary.checked != nodes
                    or summary.failed_reads
                    or summary.drifted != (drifted if name == "drift" else [])
                )
                if wrong:
                    log = platform.data_dir / "worker-baremetal.log"
                    kept = RESULTS / f"power-sync-{nodes}-failed-worker.log"
                    kept.write_text(log.read_text())
                    probe = ""
                    if summary.failed_reads:  # is the BMC or the worker's IPMI stack stuck?
                        record = next(
                            r
                            for r in await platform.lab_nodes()
                            if r["id"] == summary.failed_reads[-1]
                        )
                        code = (
                            "import asyncio,json,sys;from drivers.bmc.endpoint import BmcEndpoint;"
                            "from drivers.bmc.factory import driver_for;"
                            "d=driver_for(BmcEndpoint(**json.loads(sys.argv[1])),timeout=10);"
                            "print(asyncio.run(d.get_power_state()))"
                        )
                        fresh = await asyncio.to_thread(
                            subprocess.run,
                            [sys.executable, "-c", code, json.dumps(record["bmc"])],
                            capture_output=True, text=True, timeout=60,
                        )  # fmt: skip
                        probe = f"; a fresh process reads it: {fresh.stdout or fresh.stderr[-300:]}"
                    raise AssertionError(f"run {name}: {summary}; the worker's log: {kept}{probe}")
                runs.append({
                    "run": name,
                    "seconds": round(elapsed, 2),
                    "nodes_per_second": round(nodes / elapsed, 1),
                    "control_plane_cpu_seconds_per_node": round(
                        sum(v for k, v in cpu.items() if k != "lab") / nodes, 4
                    ),
                    "cpu_seconds_per_node_by_process": {
                        k: round(v / nodes, 4) for k, v in cpu.items()
                    },
                    "failed_reads": len(summary.failed_reads),
                    "drifted": len(summary.drifted),
                })  # fmt: skip
    return {
        "scenario": "power-sync",
        "nodes": nodes,
        "concurrency": concurrency,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "python": host.python_version(),
            "reference_loop_cpu_seconds": [reference_before, _reference_cpu_seconds()],
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20, help="BMC reads in flight")
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes, args.concurrency))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"power-sync-{args.nodes}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
