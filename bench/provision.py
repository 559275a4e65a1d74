"""Benchmark: provision N simulated nodes at once (zero BMC and boot delay) on the embedded
stack and write nodes/s, control-plane CPU seconds per node and p50/p95 per-node duration to
bench/results/provision-<N>.json.

Deployed as `metalplane up` deploys it: the API in this process, one process per worker, the
Temporal dev server and PostgreSQL; together they are the control plane. The lab (simulated BMCs
and nodes) runs in its own process on the same cores; its CPU is reported but not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import statistics
import time
from pathlib import Path

import psutil
from temporalio.client import WorkflowFailureError

from bench.peers import Peers, embedded_peers
from tests.platform import Platform, Ports, running_platform

RESULTS = Path(__file__).parent / "results"
PORTS = Ports(api=18900, lab_control=18901, redfish=18902, ipmi_base=20000)


def _reference_cpu_seconds() -> float:
    """CPU seconds of a fixed pure-Python loop: this VM's speed drifts by a third from run to
    run, so results carry it to be compared fairly."""
    started = time.process_time()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(time.process_time() - started, 3)


def _cpu_seconds(roots: dict[str, tuple[psutil.Process, bool]]) -> dict[str, float]:
    """CPU seconds per named process (optionally with its descendants), each process once."""
    seen: set[int] = set()
    totals: dict[str, float] = {}
    for name, (root, with_children) in roots.items():
        total = 0.0
        try:
            family = [root, *root.children(recursive=True)] if with_children else [root]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            if process.pid in seen:
                continue
            seen.add(process.pid)
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        totals[name] = total
    return totals


Processes = dict[str, tuple[psutil.Process, bool]]


def peer_processes(peers: Peers, platform: Platform) -> Processes:
    """The lab (with its children), Temporal and PostgreSQL (with its backends)."""
    pg_pid = peers.postgres.server.get_pid()  # type: ignore[attr-defined]
    assert platform.lab_process is not None and pg_pid
    return {
        "lab": (psutil.Process(platform.lab_process.pid), True),
        "temporal": (psutil.Process(peers.temporal.pid), False),
        "postgres": (psutil.Process(pg_pid), True),
    }


async def run(nodes: int, protocols: str, drop_rate: float) -> dict[str, object]:
    reference_before = _reference_cpu_seconds()
    async with embedded_peers() as peers:
        async with running_platform(
            name="bench", postgres_url=peers.postgres.url,
            temporal_address=peers.temporal_address, data_dir=peers.work / "platform",
            ports=PORTS, nodes=nodes, boot_delay=0.0, protocols=protocols,
            phone_home_timeout=600, in_process_workers=(),
        ) as platform:  # fmt: skip
            ids = await platform.enroll_lab()
            if drop_rate:
                await asyncio.gather(*(platform.set_faults(n, drop_rate=drop_rate) for n in ids))
            queues = ("baremetal", "inventory", "network")
            workers = {q: platform.start_worker_process(q) for q in queues}
            processes = {
                **peer_processes(peers, platform),
                "worker_baremetal": (psutil.Process(workers["baremetal"].pid), False),
                "worker_inventory": (psutil.Process(workers["inventory"].pid), False),
                "worker_network": (psutil.Process(workers["network"].pid), False),
                "api_and_bench_client": (psutil.Process(), False),
            }
            cpu_before = _cpu_seconds(processes)
            started = time.monotonic()
            durations: dict[str, float] = {}
            failed: list[str] = []
            async with platform.api() as api:

                async def provision(node_id: str) -> None:
                    begun = time.monotonic()
                    reply = await api.post(
                        f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"}
                    )
                    reply.raise_for_status()
                    handle = platform.client.get_workflow_handle(reply.json()["workflow_id"])
                    try:
                        await handle.result()
                    except WorkflowFailureError as error:
                        failed.append(f"{node_id}: {error.cause}")
                    durations[node_id] = time.monotonic() - begun

                await asyncio.gather(*(provision(n) for n in ids))
            elapsed = time.monotonic() - started
            cpu_after = _cpu_seconds(processes)
            cpu = {name: cpu_after[name] - cpu_before[name] for name in processes}
            control_plane_cpu = sum(v for name, v in cpu.items() if name != "lab")
    reference_after = _reference_cpu_seconds()
    values = sorted(durations.values())
    return {
        "scenario": "provision",
        "nodes": nodes,
        "protocols": protocols,
        "bmc_drop_rate": drop_rate,
        "failed": failed,
        "elapsed_seconds": round(elapsed, 2),
        "nodes_per_second": round(nodes / elapsed, 2),
        "control_plane_cpu_seconds_per_node": round(control_plane_cpu / nodes, 4),
        "cpu_seconds_per_node_by_process": {k: round(v / nodes, 4) for k, v in cpu.items()},
        "per_node_seconds_p50": round(statistics.median(values), 2),
        "per_node_seconds_p95": round(values[int(0.95 * (len(values) - 1))], 2),
        "per_node_seconds_max": round(values[-1], 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": host.python_version(),
            "reference_loop_cpu_seconds": [reference_before, reference_after],
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    # The lab's default: IPMI and Redfish nodes alternate (IPMI nodes' BIOS over Redfish).
    parser.add_argument("--protocols", default="ipmi,redfish")
    parser.add_argument(
        "--drop-rate", type=float, default=0.0, help="share of BMC packets the lab drops"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="repeat; the median run is reported (VM drift)"
    )
    args = parser.parse_args()
    results = []
    for number in range(1, args.runs + 1):
        results.append(asyncio.run(run(args.nodes, args.protocols, args.drop_rate)))
        print(f"run {number}/{args.runs}: {results[-1]['nodes_per_second']} nodes/s", flush=True)
    ranked = sorted(results, key=lambda r: float(r["nodes_per_second"]))  # type: ignore[arg-type]
    result = {
        **ranked[len(ranked) // 2],
        "nodes_per_second_of_each_run": [r["nodes_per_second"] for r in results],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-drop{round(args.drop_rate * 100)}" if args.drop_rate else ""
    out = RESULTS / f"provision-{args.nodes}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
