"""`metalplane up`: the whole platform on one machine, on embedded defaults.

Starts (unless settings point elsewhere) embedded PostgreSQL and the Temporal dev server with
its UI, migrates the inventory, then runs the API, one worker per task queue and the simulated
lab as child processes, and enrolls the lab's nodes. Ctrl-C stops everything; state stays in the
data dir, so starting again resumes in-flight workflows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import images
from core.secrets import boot_token_secret
from core.settings import Settings
from core.temporal_setup import ensure_search_attributes
from identity import dev_issuer
from inventory.migrate import upgrade_async

from . import devstack, network_lab

log = logging.getLogger("metalplane.up")

WORKER_QUEUES = ("baremetal", "inventory", "network", "cluster")


@dataclass
class LabOptions:
    nodes: int = 8
    boot_delay: float = 2.0
    control_port: int = 8100
    redfish_port: int = 8101
    ipmi_base_port: int = 9001
    network_lab: bool = True  # the Ethernet fabric and IB subnet, when the machine allows it
    qemu_nodes: int = 0  # more nodes: QEMU VMs that PXE boot the lab-qemu image (after the others)


class Platform:
    def __init__(self, settings: Settings, lab: LabOptions) -> None:
        self.settings = settings
        self.lab = lab
        self.data_dir = settings.data_dir.resolve()
        self.postgres: devstack.EmbeddedPostgres | None = None
        self.temporal: subprocess.Popen[bytes] | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.network: network_lab.NetworkLab | None = None
        self.network_lab_note = "off (--no-network-lab)"
        self.clusters_note = "Slurm clusters need the network lab"

    def _child_env(self, database_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            METALPLANE_DATA_DIR=str(self.data_dir),
            METALPLANE_DATABASE_URL=database_url,
            METALPLANE_TEMPORAL_ADDRESS=self.settings.temporal_address,
            METALPLANE_TEMPORAL_NAMESPACE=self.settings.temporal_namespace,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")
        self.children[name] = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.info("started %s (pid %d), log in %s", name, self.children[name].pid, out.name)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.settings.database_url
        if not database_url:
            self.postgres = devstack.start_postgres(self.data_dir / "postgres")
            database_url = self.postgres.url
            log.info("embedded PostgreSQL running in %s", self.data_dir / "postgres")
        await upgrade_async(database_url, self.settings.database_schema)

        if self.settings.temporal_embedded:
            port = int(self.settings.temporal_address.rsplit(":", 1)[1])
            self.temporal = devstack.start_temporal(
                self.data_dir / "temporal",
                port=port,
                ui_port=self.settings.temporal_ui_port,
                http_port=port + 10,
                metrics_port=port + 11,
            )
        client = await devstack.wait_for_temporal(
            self.settings.temporal_address, self.settings.temporal_namespace
        )
        await ensure_search_attributes(client, self.settings.temporal_namespace)

        dev_issuer.ensure_keypair(self.settings.dev_issuer_key_file)
        boot_token_secret(self.settings)
        images.materialize_lab_artifacts(self.settings.images_dir)

        env = self._child_env(database_url)
        await self._start_network_lab(env)
        metalplane = devstack.venv_bin("metalplane")
        self._spawn("api", [metalplane, "api"], env)
        self._spawn("console-relay", [metalplane, "console-relay"], env)
        for queue in WORKER_QUEUES:
            self._spawn(f"worker-{queue}", [metalplane, "worker", queue], env)
        if self.lab.nodes + self.lab.qemu_nodes > 0:
            slurm = self._lab_runs_slurm()
            self._spawn("lab", [
                sys.executable, "-m", "lab", *(["--slurm"] if slurm else []),
                "--nodes", str(self.lab.nodes),
                "--boot-delay", str(self.lab.boot_delay),
                "--control-port", str(self.lab.control_port),
                "--redfish-port", str(self.lab.redfish_port),
                "--ipmi-base-port", str(self.lab.ipmi_base_port),
                "--boot-url", self.settings.public_url,
                "--state-dir", str(self.data_dir / "lab"),
                "--qemu-nodes", str(self.lab.qemu_nodes),
            ], env)  # fmt: skip
        await self._wait_http(f"http://{self.settings.api_host}:{self.settings.api_port}/healthz")
        if self.lab.nodes + self.lab.qemu_nodes > 0:
            await self._enroll_lab_nodes()

    def _lab_runs_slurm(self) -> bool:
        """Lab nodes run real Slurm daemons in their fabric hosts' namespaces."""
        if self.network is None:
            return False
        refusal = network_lab.slurm_refusal()
        if refusal is not None:
            self.clusters_note = f"Slurm daemons not run: {refusal}"
            log.warning("lab: %s", self.clusters_note)
            return False
        self.clusters_note = "Slurm: lab nodes run munged, slurmd and slurmctld for real"
        return True

    async def _start_network_lab(self, env: dict[str, str]) -> None:
        """The Ethernet fabric and the InfiniBand subnet of the lab's nodes, when the machine
        allows it; the network worker then manages their switches and partitions."""
        if not self.lab.network_lab or self.lab.nodes == 0:
            return
        refusal = network_lab.refusal()
        if refusal is not None:
            self.network_lab_note = f"not started: {refusal}"
            log.warning("network lab %s", self.network_lab_note)
            return
        lab = network_lab.NetworkLab(self.data_dir, self.lab.nodes)
        await asyncio.to_thread(lab.start)
        self.network = lab
        self.network_lab_note = lab.note
        env.update(lab.worker_env())

    async def _wait_http(self, url: str, timeout: float = 90) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(int(timeout / 0.3)):
                self._check_children()
                try:
                    if (await http.get(url)).status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"{url} did not come up within {timeout} s")

    async def _enroll_lab_nodes(self) -> None:
        lab_url = f"http://127.0.0.1:{self.lab.control_port}/lab/nodes"
        await self._wait_http(lab_url)
        token = dev_issuer.mint(
            self.settings.dev_issuer_key_file,
            issuer=self.settings.issuer_url,
            audience=self.settings.jwt_audience,
            subject="metalplane-up",
            roles=["operator"],
        )
        api = f"http://{self.settings.api_host}:{self.settings.api_port}"
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
            if self.network is not None:
                await self._enroll_fabric(http)
            records = (await http.get(lab_url)).json()
            enrolled = 0
            for record in records:
                reply = await http.post("/v1/nodes", json=record)
                if reply.status_code == 201:
                    enrolled += 1
                elif reply.status_code != 409:
                    raise RuntimeError(f"enrolling {record['id']} failed: {reply.text}")
                if self.network is not None:
                    await self._cable(http, record)
        log.info("lab: %d nodes, %d newly enrolled", len(records), enrolled)

    async def _cable(self, http: httpx.AsyncClient, record: dict[str, Any]) -> None:
        """The node's cabling in the inventory, and in the lab where its NIC is."""
        assert self.network is not None
        node_id = record["id"]
        cabling = self.network.cabling(node_id, record["macs"][0])
        reply = await http.put(f"/v1/nodes/{node_id}/cabling", json=cabling)
        if reply.status_code != 200:
            raise RuntimeError(f"cabling {node_id} failed: {reply.text}")
        lab_url = f"http://127.0.0.1:{self.lab.control_port}/lab/nodes/{node_id}/netns"
        reply = await http.put(lab_url, json={"netns": self.network.host_netns(node_id)})
        reply.raise_for_status()

    async def _enroll_fabric(self, http: httpx.AsyncClient) -> None:
        """The fabric's leaves (their credentials are new on every start) and its
        provisioning network."""
        assert self.network is not None
        for record in self.network.switch_records():
            reply = await http.post("/v1/switches", json=record)
            if reply.status_code == 409:
                access = {k: record[k] for k in ("mgmt_address", "username", "password")}
                reply = await http.patch(f"/v1/switches/{record['id']}", json=access)
            if not reply.is_success:
                raise RuntimeError(f"enrolling switch {record['id']} failed: {reply.text}")
        if (await http.get("/v1/fabric/provisioning-network")).status_code == 404:
            reply = await http.put("/v1/fabric/provisioning-network", json=network_lab.PROVISIONING)
            if reply.status_code != 200:
                raise RuntimeError(f"setting the provisioning network failed: {reply.text}")

    def _check_children(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {child.returncode}; see {self.data_dir}/logs/{name}.log"
                )

    async def supervise(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            self._check_children()
            try:
                await asyncio.wait_for(stop.wait(), timeout=1)
            except TimeoutError:
                pass

    def stop(self) -> None:
        for name, child in reversed(list(self.children.items())):
            devstack.stop_process(child)
            log.info("stopped %s", name)
        if self.temporal is not None:
            devstack.stop_process(self.temporal)
            log.info("stopped Temporal dev server")
        if self.network is not None:
            self.network.stop()
            log.info("stopped the network lab")
        if self.postgres is not None:
            self.postgres.stop()
            log.info("stopped PostgreSQL")


def banner(settings: Settings, platform: Platform) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    return "\n".join([
        "metalplane is up.",
        f"  API          {api}   (docs: {api}/docs)",
        f"  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}"
        + ("" if platform.temporal else "  (external Temporal: see its own UI)"),
        f"  Lab          {platform.lab.nodes} simulated nodes"
        + (f" + {platform.lab.qemu_nodes} QEMU nodes (image lab-qemu)" if platform.lab.qemu_nodes
           else "")
        + ", control on "
        f"http://127.0.0.1:{platform.lab.control_port}/lab/nodes",
        f"  Network lab  {platform.network_lab_note}",
        f"  Clusters     {platform.clusters_note}",
        f"  Data dir     {platform.data_dir}   (logs in {Path(platform.data_dir) / 'logs'})",
        "Try:  .venv/bin/metalplane nodes list",
        "      .venv/bin/metalplane nodes provision lab-001 --image lab-sim",
        "Ctrl-C stops everything; `make run` again resumes where it stopped.",
    ])  # fmt: skip


async def run(settings: Settings, lab: LabOptions) -> None:
    platform = Platform(settings, lab)
    try:
        await platform.start()
        print(banner(settings, platform), flush=True)
        await platform.supervise()
    finally:
        platform.stop()
