"""A whole metalplane under test: its own schema and namespace on the session's PostgreSQL and
Temporal, the real API (uvicorn on a pinned port), real workers and a lab subprocess of
simulated nodes behind BMC simulators speaking IPMI over UDP and Redfish over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

import images
from api.app import create_app
from cli import devstack
from core.contracts import POWER_SYNC_SCHEDULE_ID, PowerSyncSummary
from core.settings import Settings
from core.temporal_setup import ensure_namespace, ensure_search_attributes
from drivers.bmc.redfish import close_pooled_sessions
from identity import dev_issuer
from inventory.db import create_engine, session_factory
from inventory.migrate import upgrade_async
from workers import baremetal as baremetal_worker
from workers import cluster as cluster_worker
from workers import inventory as inventory_worker
from workers import network as network_worker


@dataclass
class Ports:
    api: int
    lab_control: int
    redfish: int
    ipmi_base: int
    ssh_base: int = 0  # QEMU nodes' forwarded SSH servers; 0: none
    console_relay: int = 0  # the console relay, served in-process; 0: none


@dataclass
class Platform:
    settings: Settings
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    ports: Ports
    data_dir: Path
    token: str
    api_app: Any = None  # the FastAPI app served in this process
    lab_process: subprocess.Popen[bytes] | None = None
    worker_processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def lab_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.lab_control}"

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=30)

    def mint(
        self,
        *roles: str,
        tenant: str | None = None,
        subject: str = "test-user",
        ttl_seconds: int = 3600,
    ) -> str:
        """A dev-issuer token with these roles (and tenant)."""
        return dev_issuer.mint(
            self.settings.dev_issuer_key_file, issuer=self.settings.issuer_url,
            audience=self.settings.jwt_audience, subject=subject, roles=list(roles),
            tenant=tenant, ttl_seconds=ttl_seconds,
        )  # fmt: skip

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            METALPLANE_DATA_DIR=str(self.data_dir),
            METALPLANE_DATABASE_URL=self.settings.database_url or "",
            METALPLANE_DATABASE_SCHEMA=self.settings.database_schema,
            METALPLANE_TEMPORAL_ADDRESS=self.settings.temporal_address,
            METALPLANE_TEMPORAL_NAMESPACE=self.settings.temporal_namespace,
            METALPLANE_BMC_TIMEOUT_SECONDS=str(self.settings.bmc_timeout_seconds),
        )
        return env

    async def lab_nodes(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"{self.lab_url}/lab/nodes")).json()

    async def lab_node_record(self, node_id: str) -> dict[str, Any]:
        """The lab's enrollment record of the node (what `enroll_lab` posts)."""
        (record,) = [r for r in await self.lab_nodes() if r["id"] == node_id]
        return record

    async def lab_node(self, node_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.get(f"{self.lab_url}/lab/nodes/{node_id}")
            reply.raise_for_status()
            return reply.json()

    async def wait_for_lab(
        self, node_id: str, predicate: Any, timeout: float = 60
    ) -> dict[str, Any]:
        """Poll the lab's view of the node until predicate(state) holds."""
        async with asyncio.timeout(timeout):
            while True:
                state = await self.lab_node(node_id)
                if predicate(state):
                    return state
                await asyncio.sleep(0.1)

    async def set_faults(self, node_id: str, **faults: float) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.put(f"{self.lab_url}/lab/nodes/{node_id}/faults", json=faults)
            reply.raise_for_status()

    async def lab_put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.put(f"{self.lab_url}{path}", json=body)
            reply.raise_for_status()
            return reply.json()

    async def lab_slurm(self, node_id: str, *argv: str, timeout: float = 60) -> str:
        """A Slurm command on the node's cluster, as a user logged in there runs it."""
        async with httpx.AsyncClient(timeout=timeout + 10) as http:
            reply = await http.post(
                f"{self.lab_url}/lab/nodes/{node_id}/slurm",
                json={"argv": list(argv), "timeout": timeout},
            )
            reply.raise_for_status()
            result = reply.json()
        assert result["ok"], result["error"]
        return str(result["stdout"])

    async def enroll_lab(self) -> list[str]:
        ids = []
        async with self.api() as api:
            for record in await self.lab_nodes():
                reply = await api.post("/v1/nodes", json=record)
                assert reply.status_code == 201, reply.text
                ids.append(record["id"])
        return ids

    async def wait_state(
        self, node_id: str, states: set[str], timeout: float = 120
    ) -> dict[str, Any]:
        """Poll the API until the node's state is in `states` with no operation phase left."""
        async with self.api() as api:
            async with asyncio.timeout(timeout):
                while True:
                    node = (await api.get(f"/v1/nodes/{node_id}")).json()
                    phase = (node.get("operation") or {}).get("phase")
                    if node["state"] in states and phase in (
                        None,
                        "active",
                        "failed",
                        "available",
                        "maintenance",
                    ):
                        return node
                    await asyncio.sleep(0.2)

    async def release(self, node_id: str, token: str | None = None) -> dict[str, Any]:
        """Release the node and wait for its ReleaseNode (and cleaning) to end; the node as
        the API then shows it."""
        async with self.api(token) as api:
            reply = await api.post(f"/v1/nodes/{node_id}/release")
            assert reply.status_code == 202, reply.text
            accepted = reply.json()
            handle = self.client.get_workflow_handle(
                accepted["workflow_id"], run_id=accepted["run_id"]
            )
            await handle.result()
            return (await api.get(f"/v1/nodes/{node_id}")).json()

    async def wait_activity(self, workflow_id: str, activity: str, timeout: float = 60) -> None:
        """Wait until a worker runs the workflow's activity `activity` (its attempt started)."""
        handle = self.client.get_workflow_handle(workflow_id)
        async with asyncio.timeout(timeout):
            while True:
                pending = (await handle.describe()).raw_description.pending_activities
                if any(
                    a.activity_type.name == activity
                    and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    for a in pending
                ):
                    return
                await asyncio.sleep(0.1)

    async def trigger_power_sync(self) -> WorkflowHandle[Any, PowerSyncSummary]:
        """Trigger the power-sync schedule: the handle of the run it starts."""
        schedule = self.client.get_schedule_handle(POWER_SYNC_SCHEDULE_ID)
        before = (await schedule.describe()).info.num_actions
        await schedule.trigger()
        async with asyncio.timeout(30):
            while True:  # the schedule starts the run a moment later
                described = await schedule.describe()
                if described.info.num_actions > before:
                    break
                await asyncio.sleep(0.1)
        started = described.info.recent_actions[-1].action
        return self.client.get_workflow_handle(
            started.workflow_id, run_id=started.first_execution_run_id,
            result_type=PowerSyncSummary,
        )  # fmt: skip

    async def sre_reset(self, workflow_id: str, reason: str) -> None:
        """What an SRE does once the cause of a failure is fixed: reset the workflow to its
        first workflow task, so it runs again from the start (every step converges)."""
        handle = self.client.get_workflow_handle(workflow_id)
        history = await handle.fetch_history()
        first_task = next(
            e.event_id for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        )  # fmt: skip
        await self.client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=self.client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                reason=reason,
                workflow_task_finish_event_id=first_task,
                request_id=f"reset-{workflow_id}-{first_task}-{len(history.events)}",
            )
        )

    def start_console_relay(self) -> subprocess.Popen[bytes]:
        """`metalplane console-relay` on the platform's relay port, stopped with the workers."""
        log = open(self.data_dir / "console-relay.log", "ab")
        env = self.child_env() | {
            "METALPLANE_CONSOLE_RELAY_PORT": str(self.settings.console_relay_port),
            "METALPLANE_CONSOLE_SCAN_SECONDS": str(self.settings.console_scan_seconds),
        }
        process = subprocess.Popen(
            [devstack.venv_bin("metalplane"), "console-relay"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.worker_processes["console-relay"] = process
        return process

    def start_worker_process(self, queue: str) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / f"worker-{queue}.log", "ab")
        process = subprocess.Popen(
            [devstack.venv_bin("metalplane"), "worker", queue],
            env=self.child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.worker_processes[queue] = process
        return process


async def record_histories(client: Client, directory: Path) -> None:
    """Every closed workflow of the namespace as JSON (`make histories`): the material the
    replay test's histories (tests/histories/) are chosen from."""
    recorded: dict[str, str] = {}
    async for execution in client.list_workflows("ExecutionStatus != 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        status = execution.status.name.lower() if execution.status else "unknown"
        name = f"{execution.workflow_type}.{status}.{execution.id}.{execution.run_id[:8]}.json"
        recorded[name.replace("/", "_").replace(":", "-")] = history.to_json()  # portable names

    def write() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in recorded.items():
            (directory / name).write_text(text)

    await asyncio.to_thread(write)


async def _serve_api(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port,
                       log_level="warning", lifespan="on")
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    return server, task


def _start_lab(
    data_dir: Path,
    ports: Ports,
    nodes: int,
    boot_delay: float,
    public_url: str,
    protocols: str | None,
    slurm: bool = False,
    flat_network: str | None = None,
    gpu_model: str | None = None,
    qemu_nodes: int = 0,
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "lab", "--nodes", str(nodes),
        "--ipmi-base-port", str(ports.ipmi_base), "--redfish-port", str(ports.redfish),
        "--control-port", str(ports.lab_control), "--boot-url", public_url,
        "--boot-delay", str(boot_delay), "--state-dir", str(data_dir / "lab"),
        "--ssh-base-port", str(ports.ssh_base),
    ]  # fmt: skip
    if protocols:
        argv += ["--protocols", protocols]
    if slurm:
        argv.append("--slurm")
    if flat_network:
        argv += ["--flat-network", flat_network]
    if gpu_model:
        argv += ["--gpu-model", gpu_model]
    if qemu_nodes:
        argv += ["--qemu-nodes", str(qemu_nodes)]
    log = open(data_dir / "lab.log", "ab")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_url(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(timeout):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_platform(
    *,
    name: str,
    postgres_url: str,
    temporal_address: str,
    data_dir: Path,
    ports: Ports,
    nodes: int = 4,
    boot_delay: float = 0.2,
    protocols: str | None = None,
    phone_home_timeout: float = 60,
    in_process_workers: tuple[str, ...] = ("baremetal", "inventory", "network", "cluster"),
    oidc_issuer: str | None = None,
    jwt_audience: str = "metalplane",
    extra_settings: dict[str, Any] | None = None,
    lab_slurm: bool = False,
    lab_flat_network: str | None = None,
    lab_gpu_model: str | None = None,
    lab_qemu_nodes: int = 0,
) -> AsyncIterator[Platform]:
    settings = Settings(**{
        "data_dir": data_dir,
        "database_url": postgres_url,
        "database_schema": name,
        "temporal_address": temporal_address,
        "temporal_namespace": name,
        "api_port": ports.api,
        "public_url": f"http://127.0.0.1:{ports.api}",
        "phone_home_timeout_seconds": phone_home_timeout,
        "bmc_timeout_seconds": 15,
        "rate_limit_per_second": 1000.0,  # tests and benchmarks drive many calls as one subject
        "rate_limit_burst": 10_000,
        "oidc_issuer": oidc_issuer,
        "jwt_audience": jwt_audience,
        "commission_on_enroll": False,  # enrolled nodes are available at once, unless asked
        "console_relay_port": ports.console_relay,
        "console_relay_url": f"http://127.0.0.1:{ports.console_relay}",
        "console_scan_seconds": 1.0,
        **(extra_settings or {}),  # may override the above
    })  # fmt: skip
    await upgrade_async(postgres_url, name)
    admin = await Client.connect(temporal_address)
    await ensure_namespace(admin, name)
    await ensure_search_attributes(admin, name)
    client = await Client.connect(temporal_address, namespace=name)
    images.materialize_lab_artifacts(settings.images_dir)
    dev_issuer.ensure_keypair(settings.dev_issuer_key_file)  # mint only reads it; the API too
    token = dev_issuer.mint(
        settings.dev_issuer_key_file, issuer=settings.issuer_url,
        audience=settings.jwt_audience, subject="test-operator", roles=["operator"],
    )  # fmt: skip
    engine = create_engine(postgres_url, schema=name)
    platform = Platform(
        settings=settings, client=client, sessions=session_factory(engine), engine=engine,
        ports=ports, data_dir=data_dir, token=token,
    )  # fmt: skip
    server, server_task = await _serve_api(settings)
    platform.api_app = server.config.app
    workers: list[Worker] = []
    if "baremetal" in in_process_workers:
        activities = baremetal_worker.make_activities(settings, platform.sessions)
        workers.append(baremetal_worker.build_worker(client, activities, settings, "baremetal"))
    if "inventory" in in_process_workers:
        activities_i = inventory_worker.make_activities(settings, platform.sessions)
        workers.append(inventory_worker.build_worker(client, activities_i, settings, "inventory"))
    if "network" in in_process_workers:
        activities_n = network_worker.make_activities(settings, platform.sessions)
        workers.append(network_worker.build_worker(client, activities_n, settings, "network"))
    if "cluster" in in_process_workers:
        activities_c = cluster_worker.make_activities(settings, platform.sessions)
        workers.append(cluster_worker.build_worker(client, activities_c, settings, "cluster"))
    worker_tasks = [asyncio.create_task(w.run()) for w in workers]
    platform.lab_process = _start_lab(
        data_dir,
        ports,
        nodes,
        boot_delay,
        settings.public_url,
        protocols,
        lab_slurm,
        lab_flat_network,
        lab_gpu_model,
        lab_qemu_nodes,
    )
    if ports.console_relay:  # its own process, as deployed (pyghmi's SOL sessions are global)
        relay = platform.start_console_relay()
    try:
        await _wait_url(f"{platform.lab_url}/lab/nodes", platform.lab_process)
        if ports.console_relay:
            await _wait_url(f"http://127.0.0.1:{ports.console_relay}/healthz", relay)
        yield platform
        if record := os.environ.get("METALPLANE_RECORD_HISTORIES"):
            await record_histories(client, Path(record) / name)
    finally:
        for process in [platform.lab_process, *platform.worker_processes.values()]:
            devstack.stop_process(process)
        for worker in workers:
            await worker.shutdown()
        await close_pooled_sessions()
        for task in worker_tasks:
            with contextlib.suppress(Exception):
                await task
        server.should_exit = True
        await server_task
        await engine.dispose()
