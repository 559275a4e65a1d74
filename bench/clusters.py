"""Benchmark: T tenants each create an N-node Slurm cluster at once on a fleet of T x N
simulated nodes; write the time until every cluster is ready and the API's p50/p99 latency
meanwhile to bench/results/clusters-<T>x<N>.json.

Deployed as `metalplane up` deploys it (the API in this process, one process per worker, the
Temporal dev server, PostgreSQL). The lab's nodes run real Slurm daemons (as root), each in its
own network namespace on one flat bridge (no switches: networks are created with no leaf to
configure, and no tenant isolation is measured here). An API prober reads cluster and node
lists as an operator's dashboard would, every 100 ms, while the clusters come up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import statistics
import time
from typing import Any

import httpx
from temporalio.client import WorkflowFailureError

from bench.peers import embedded_peers, save
from core.contracts import cluster_workflow_id
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18910, lab_control=18911, redfish=18912, ipmi_base=20500)
QUEUES = ("baremetal", "inventory", "network", "cluster")
# One GPU model fleet-wide: every tenant wants the same nodes, the hardest case for admission
# (the lab's mixed fleet splits 200 nodes 52/52/48/48, which 10-node clusters cannot fill).
GPU_MODEL = "H100 80GB HBM3"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(share * (len(ordered) - 1))] * 1000, 1) if ordered else 0.0


async def _probe(api: httpx.AsyncClient, latencies: list[float], stop: asyncio.Event) -> None:
    paths = ("/v1/clusters?limit=100", "/v1/nodes?limit=100", "/v1/tenants")
    turn = 0
    while not stop.is_set():
        begun = time.monotonic()
        reply = await api.get(paths[turn % len(paths)])
        reply.raise_for_status()
        latencies.append(time.monotonic() - begun)
        turn += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


async def _tenants(platform: Platform, tenants: int, size: int) -> list[str]:
    names = [f"t{i:03d}" for i in range(1, tenants + 1)]
    async with platform.api(platform.mint("platform-admin")) as admin:
        for name in names:
            reply = await admin.post("/v1/tenants", json={
                "id": name, "display_name": name, "quotas": {"nodes": size, "gpus": size * 8},
            })  # fmt: skip
            reply.raise_for_status()
    return names


async def run(tenants: int, size: int) -> dict[str, Any]:
    nodes = tenants * size
    async with embedded_peers() as peers:
        async with running_platform(
            name="bench_clusters", postgres_url=peers.postgres.url,
            temporal_address=peers.temporal_address, data_dir=peers.work / "platform",
            ports=PORTS, nodes=nodes, boot_delay=0.0, protocols="redfish",
            phone_home_timeout=600, in_process_workers=(), lab_slurm=True,
            lab_flat_network="mpbc", lab_gpu_model=GPU_MODEL,
            extra_settings={"cluster_ready_timeout_seconds": 1800},
        ) as platform:  # fmt: skip
            for queue in QUEUES:
                platform.start_worker_process(queue)
            await platform.enroll_lab()
            names = await _tenants(platform, tenants, size)
            latencies: list[float] = []
            admissions: list[float] = []
            ready_after: dict[str, float] = {}
            failed: list[str] = []
            stop = asyncio.Event()
            async with platform.api(platform.mint("platform-admin")) as dashboard:
                prober = asyncio.create_task(_probe(dashboard, latencies, stop))
                started = time.monotonic()

                async def one(tenant: str) -> None:
                    token = platform.mint("tenant-admin", tenant=tenant, subject=tenant)
                    async with platform.api(token) as api:
                        begun = time.monotonic()
                        reply = await api.post("/v1/clusters", json={
                            "name": "c1", "kind": "slurm", "node_count": size,
                            "gpu_model": GPU_MODEL, "image": "lab-sim",
                        })  # fmt: skip
                        admissions.append(time.monotonic() - begun)
                        if reply.status_code != 201:
                            failed.append(f"{tenant}: {reply.status_code} {reply.text}")
                            return
                    workflow_id = cluster_workflow_id(reply.json()["id"])
                    try:
                        await platform.client.get_workflow_handle(workflow_id).result()
                    except WorkflowFailureError as error:
                        failed.append(f"{tenant}: {error.cause}")
                    ready_after[tenant] = time.monotonic() - started

                await asyncio.gather(*(one(t) for t in names))
                elapsed = time.monotonic() - started
                stop.set()
                await prober
    ready = sorted(ready_after.values())
    return {
        "scenario": "clusters",
        "tenants": tenants,
        "nodes_per_cluster": size,
        "fleet_nodes": nodes,
        "failed": failed,
        "all_ready_seconds": round(elapsed, 2),
        "cluster_ready_seconds_p50": round(statistics.median(ready), 2) if ready else None,
        "cluster_ready_seconds_max": round(ready[-1], 2) if ready else None,
        "admission_ms_p50": _percentile(admissions, 0.5),
        "admission_ms_p99": _percentile(admissions, 0.99),
        "api_reads_during_run": len(latencies),
        "api_read_ms_p50": _percentile(latencies, 0.5),
        "api_read_ms_p99": _percentile(latencies, 0.99),
        "machine": {"cpus": os.cpu_count(), "python": host.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--size", type=int, default=10, help="nodes per cluster")
    args = parser.parse_args()
    result = asyncio.run(run(args.tenants, args.size))
    save(result, f"clusters-{args.tenants}x{args.size}")


if __name__ == "__main__":
    main()
