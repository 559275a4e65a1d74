"""A bare-metal worker killed with SIGKILL mid-provision resumes on restart, and no BMC side
effect is repeated (the lab counts every command each simulated BMC received)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.platform import Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = Ports(api=18210, lab_control=18310, redfish=18311, ipmi_base=19400)


async def test_worker_killed_mid_provision_resumes_without_repeating(
    postgres_url: str, temporal_address: str, tmp_path: Path
) -> None:
    async with running_platform(
        name="t_worker_crash", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path, ports=PORTS, nodes=2, boot_delay=5.0,
        in_process_workers=("inventory", "network"),
    ) as platform:  # fmt: skip
        await platform.enroll_lab()
        worker = platform.start_worker_process("baremetal")
        async with platform.api() as api:
            for node_id in ("lab-001", "lab-002"):
                reply = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"})
                assert reply.status_code == 202, reply.text
            # Until both nodes are powered and booting, neither phoned home yet: each workflow
            # waits for its signal (not in an activity a kill would leave to its timeout).
            async with asyncio.timeout(60):
                while True:
                    phases = [
                        ((await api.get(f"/v1/nodes/{n}")).json().get("operation") or {}).get(
                            "phase"
                        )
                        for n in ("lab-001", "lab-002")
                    ]
                    lab = [await platform.lab_node(n) for n in ("lab-001", "lab-002")]
                    if phases == ["booting"] * 2 and all(n["boot_in_progress"] for n in lab):
                        break
                    await asyncio.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        await asyncio.sleep(6)  # the nodes phone home while no worker runs
        platform.start_worker_process("baremetal")
        for node_id in ("lab-001", "lab-002"):
            node = await platform.wait_state(node_id, {"active", "failed"}, timeout=120)
            assert node["state"] == "active", node["last_error"]
            counters = (await platform.lab_node(node_id))["counters"]
            assert counters["power_on"] == 1, counters
            assert counters["power_off"] == 0, counters  # it was off: nothing to do
            assert counters["bios_patch"] == 1, counters
            assert counters["set_boot"] == 2, counters  # network once, then disk
