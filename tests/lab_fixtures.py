"""Start the hardware lab for tests, on pinned 127.0.0.1 ports with state in a temp dir.

`lab_process` runs `python -m lab` as a child process: the IPMI simulators must not share a
process with a pyghmi client (pyghmi keeps one process-wide session table and I/O thread for
both sides; in one process ~3% of client calls hang, measured). `lab_in_process` runs a Lab on
the test's own loop, for Redfish-only labs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from drivers.bmc.endpoint import BmcEndpoint
from lab.server import Lab, LabConfig

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LabHandle:
    control_url: str
    enrollments: dict[str, dict[str, Any]]
    process: asyncio.subprocess.Process | None = None
    lab: Lab | None = None

    def endpoint(self, node_id: str, **overrides: Any) -> BmcEndpoint:
        return BmcEndpoint(**{**self.enrollments[node_id]["bmc"], **overrides})

    async def state(self, node_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.control_url}/lab/nodes/{node_id}")
            response.raise_for_status()
            return response.json()

    async def set_faults(self, node_id: str, **faults: Any) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.put(
                f"{self.control_url}/lab/nodes/{node_id}/faults", json=faults
            )
            response.raise_for_status()
            return response.json()

    async def reset_bios(self, node_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.put(f"{self.control_url}/lab/nodes/{node_id}/bios")
            response.raise_for_status()
            return response.json()

    async def wait_for(
        self, node_id: str, predicate: Any, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll the node's state until predicate(state) holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = await self.state(node_id)
            if predicate(state):
                return state
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{node_id} never reached the expected state: {state}")
            await asyncio.sleep(0.05)


async def _enrollments(control_url: str, *, timeout: float) -> dict[str, dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                response = await client.get(f"{control_url}/lab/nodes")
                if response.status_code == 200:
                    return {n["id"]: n for n in response.json()}
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"lab control API {control_url} did not come up")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def lab_process(
    *,
    state_dir: Path,
    nodes: int = 2,
    ipmi_base_port: int,
    redfish_port: int,
    control_port: int,
    boot_url: str = "http://127.0.0.1:9",
    boot_delay: float = 0.2,
    protocols: str = "ipmi,redfish",
) -> AsyncIterator[LabHandle]:
    args = [
        sys.executable, "-m", "lab",
        "--nodes", str(nodes),
        "--ipmi-base-port", str(ipmi_base_port),
        "--redfish-port", str(redfish_port),
        "--control-port", str(control_port),
        "--boot-url", boot_url,
        "--boot-delay", str(boot_delay),
        "--state-dir", str(state_dir),
        "--protocols", protocols,
    ]  # fmt: skip
    log = (state_dir.parent / f"{state_dir.name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    control_url = f"http://127.0.0.1:{control_port}"
    try:
        enrollments = await _enrollments(control_url, timeout=20.0)
        yield LabHandle(control_url=control_url, enrollments=enrollments, process=proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def lab_in_process(config: LabConfig) -> AsyncIterator[LabHandle]:
    lab = Lab(config)
    await lab.start()
    try:
        control_url = f"http://127.0.0.1:{config.control_port}"
        enrollments = {n: lab.enrollment(node) for n, node in lab.nodes.items()}
        yield LabHandle(control_url=control_url, enrollments=enrollments, lab=lab)
    finally:
        await lab.stop()
