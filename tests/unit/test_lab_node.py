"""Simulated nodes boot per docs/boot-contract.md against a stand-in boot service."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from drivers.bmc.base import BootDevice
from drivers.bmc.redfish import RedfishDriver
from lab.cmdline import BootConfigError, parse_cmdline, parse_ipxe
from lab.server import LabConfig
from tests.lab_fixtures import LabHandle, lab_in_process

REDFISH_PORT = 18131
CONTROL_PORT = 18130
IPMI_BASE_PORT = 19131  # unused: Redfish-only lab
BOOT_PORT = 18139
BOOT_URL = f"http://127.0.0.1:{BOOT_PORT}"
KERNEL = b"\x7fELF fake kernel " * 4096
INITRD = b"070701 fake initrd " * 2048


# -- kernel command line rules (the contract's last section) -------------------------------


def test_cmdline_rules() -> None:
    facts = parse_cmdline(
        "ip=dhcp iommu=pt intel_iommu=on hugepagesz=1G hugepages=16 hugepages=512 "
        "ds=nocloud-net;s=http://x/boot/52:54:00:00:00:01/"
    )
    assert facts.hugepages == {"1048576": 16, "2048": 512}
    assert facts.iommu_mode == "passthrough"
    assert facts.nocloud_seed == "http://x/boot/52:54:00:00:00:01/"
    assert facts.transparent_hugepage is None
    assert parse_cmdline("amd_iommu=on transparent_hugepage=never").iommu_mode == "translated"
    assert parse_cmdline("intel_iommu=off").iommu_mode == "off"
    assert parse_cmdline("quiet").iommu_mode == "off"
    assert parse_cmdline("transparent_hugepage=never").transparent_hugepage == "never"
    assert parse_cmdline("ds=nocloud-net").nocloud_seed is None


def test_ipxe_script_parsing() -> None:
    script = parse_ipxe(
        "#!ipxe\nkernel http://a/vmlinuz initrd=initrd.img iommu=pt\n"
        "initrd --name initrd.img http://a/initrd.img\nboot\n"
    )
    assert (script.kernel_url, script.initrd_url) == ("http://a/vmlinuz", "http://a/initrd.img")
    assert script.kernel_args == "initrd=initrd.img iommu=pt"
    for bad in ("kernel http://a/k\nboot", "#!ipxe\ninitrd http://a/i\nboot", "#!ipxe\nkernel"):
        with pytest.raises(BootConfigError):
            parse_ipxe(bad)


# -- a stand-in boot service ----------------------------------------------------------------


@dataclass
class BootService:
    """Serves scripts/user-data/artifacts per node MAC and records the boot path's requests
    and phone-homes."""

    scripts: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    phone_homes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "<method> <what> <mac>", in order
    hold_ipxe: asyncio.Event | None = None

    def open_session(self, mac: str, *, script: str | None = None, thp: bool = False) -> str:
        token = f"token-{mac}-{len(self.tokens)}"
        self.tokens.add(token)
        args = (
            f"initrd=initrd.img ip=dhcp iommu=pt intel_iommu=on hugepagesz=1G hugepages=16 "
            f"{'transparent_hugepage=always ' if thp else ''}"
            f"ds=nocloud-net;s={BOOT_URL}/boot/{mac}/"
        )
        self.scripts[mac] = script or (
            f"#!ipxe\nkernel {BOOT_URL}/boot/artifacts/lab-sim/vmlinuz {args}\n"
            f"initrd --name initrd.img {BOOT_URL}/boot/artifacts/lab-sim/initrd.img\nboot\n"
        )
        self._user_data = token
        return token

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/boot/{mac}/ipxe", response_class=PlainTextResponse)
        async def ipxe(mac: str) -> str:
            if self.hold_ipxe is not None:
                await self.hold_ipxe.wait()
            if mac not in self.scripts:
                raise HTTPException(404, "no boot session")
            self.requests.append(f"GET ipxe {mac}")
            return self.scripts[mac]

        @app.post("/boot/{mac}/boot-start")
        async def boot_start(mac: str) -> dict[str, int]:
            self.requests.append(f"POST boot-start {mac}")
            return {"boot": 1}

        @app.get("/boot/{mac}/user-data", response_class=PlainTextResponse)
        async def user_data(mac: str) -> str:
            self.requests.append(f"GET user-data {mac}")
            return (
                "#cloud-config\nmetalplane:\n"
                f"  node_id: node-{mac}\n  boot_session: s1\n  image: lab-sim\n"
                f"  phone_home:\n    url: {BOOT_URL}/boot/phone-home\n"
                f"    token: {self._user_data}\n"
                "  tuning:\n    cpu_governor: performance\n    transparent_hugepage: never\n"
                "runcmd: []\n"
            )

        @app.get("/boot/artifacts/{image}/{name}")
        async def artifact(image: str, name: str) -> Response:
            blobs = {"vmlinuz": KERNEL, "initrd.img": INITRD}
            if image != "lab-sim" or name not in blobs:
                raise HTTPException(404)
            return Response(blobs[name], media_type="application/octet-stream")

        @app.post("/boot/phone-home", status_code=202)
        async def phone_home(request: Request, authorization: str = Header("")) -> dict[str, str]:
            token = authorization.removeprefix("Bearer ")
            if token not in self.tokens:
                raise HTTPException(401, "unknown or used token")
            self.tokens.discard(token)  # single use
            self.phone_homes.append(await request.json())
            return {"status": "accepted"}

        return app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def boot_service() -> AsyncIterator[BootService]:
    service = BootService()
    server = uvicorn.Server(
        uvicorn.Config(service.app(), host="127.0.0.1", port=BOOT_PORT, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # the port is taken: raise it
        await asyncio.sleep(0.02)
    yield service
    server.should_exit = True
    await task


def lab_config(state_dir: Path) -> LabConfig:
    return LabConfig(
        nodes=4,
        state_dir=state_dir,
        ipmi_base_port=IPMI_BASE_PORT,
        redfish_port=REDFISH_PORT,
        control_port=CONTROL_PORT,
        boot_url=BOOT_URL,
        boot_delay=0.1,
        protocols=("redfish",),
    )


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    return tmp_path / "lab-state"


async def network_boot(lab: LabHandle, node_id: str) -> RedfishDriver:
    driver = RedfishDriver(lab.endpoint(node_id), timeout=10.0)
    await driver.set_boot_device(BootDevice.NETWORK)
    await driver.power_on()
    return driver


async def test_network_boot_phones_home_with_derived_facts(
    boot_service: BootService, lab_dir: Path
) -> None:
    async with lab_in_process(lab_config(lab_dir)) as lab:
        mac = lab.enrollments["lab-001"]["macs"][0]
        token = boot_service.open_session(mac)
        driver = await network_boot(lab, "lab-001")
        state = await lab.wait_for("lab-001", lambda s: s["boots"] == 1)
        assert state["last_boot_error"] is None and not state["boot_in_progress"]
        facts = boot_service.phone_homes[-1]
        assert facts["kernel_sha256"] == hashlib.sha256(KERNEL).hexdigest()
        assert facts["initrd_sha256"] == hashlib.sha256(INITRD).hexdigest()
        assert facts["hugepages"] == {"1048576": 16}
        assert facts["iommu_mode"] == "passthrough"
        assert facts["transparent_hugepage"] == "never"  # from user-data tuning
        assert facts["cpu_governor"] == "performance"
        assert facts["bios"]["SysProfile"] == "PerfPerWattOptimizedDapc"  # lab-001: Dell
        assert facts["system_vendor"] == "Dell Inc."
        assert [n["mac"] for n in facts["nics"]] == lab.enrollments["lab-001"]["macs"]
        assert "ds=nocloud-net;s=" in facts["kernel_cmdline"]
        assert token not in boot_service.tokens  # used up
        # The script is only read; the OS posts the boot start, then fetches user-data once.
        assert [r for r in boot_service.requests if r.endswith(mac)] == [
            f"GET ipxe {mac}",
            f"POST boot-start {mac}",
            f"GET user-data {mac}",
        ]
        # The one-time override was consumed: a reset boots the disk, no second phone-home.
        await driver.reset()
        await lab.wait_for("lab-001", lambda s: s["os_up"])
        assert (await lab.state("lab-001"))["boots"] == 1
        await driver.power_off()


async def test_cmdline_thp_wins_over_user_data(boot_service: BootService, lab_dir: Path) -> None:
    async with lab_in_process(lab_config(lab_dir)) as lab:
        boot_service.open_session(lab.enrollments["lab-002"]["macs"][0], thp=True)
        driver = await network_boot(lab, "lab-002")
        await lab.wait_for("lab-002", lambda s: s["boots"] == 1)
        assert boot_service.phone_homes[-1]["transparent_hugepage"] == "always"
        await driver.power_off()


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("#!ipxe\nkernel\nboot\n", "without an image URL"),
        (f"#!ipxe\nkernel {BOOT_URL}/boot/artifacts/lab-sim/vmlinuz ip=dhcp\nboot\n", "ds="),
        (f"#!ipxe\nkernel {BOOT_URL}/boot/artifacts/lab-sim/missing\nboot\n", "404"),
        ("echo hello\n", "not an iPXE script"),
    ],
)
async def test_bad_boot_config_never_phones_home(
    boot_service: BootService, lab_dir: Path, script: str, error: str
) -> None:
    async with lab_in_process(lab_config(lab_dir)) as lab:
        mac = lab.enrollments["lab-003"]["macs"][0]
        boot_service.open_session(mac, script=script)
        before = len(boot_service.phone_homes)
        driver = await network_boot(lab, "lab-003")
        state = await lab.wait_for("lab-003", lambda s: s["last_boot_error"])
        assert error in state["last_boot_error"] and state["boots"] == 0
        assert len(boot_service.phone_homes) == before
        await driver.power_off()


async def test_no_boot_session_is_a_404_error(boot_service: BootService, lab_dir: Path) -> None:
    async with lab_in_process(lab_config(lab_dir)) as lab:
        boot_service.scripts.pop(lab.enrollments["lab-004"]["macs"][0], None)
        driver = await network_boot(lab, "lab-004")
        state = await lab.wait_for("lab-004", lambda s: s["last_boot_error"])
        assert "404" in state["last_boot_error"] and state["boots"] == 0
        await driver.power_off()


async def test_power_off_cancels_boot_and_restart_resumes_it(
    boot_service: BootService, lab_dir: Path
) -> None:
    mac = "52:54:00:00:04:01"  # lab-004
    boot_service.open_session(mac)
    boot_service.hold_ipxe = asyncio.Event()
    try:
        async with lab_in_process(lab_config(lab_dir)) as lab:
            driver = await network_boot(lab, "lab-004")
            await asyncio.sleep(0.3)  # the node now waits on the iPXE script
            await driver.power_off()
            boot_service.hold_ipxe.set()
            await asyncio.sleep(0.3)
            state = await lab.state("lab-004")
            assert state["boots"] == 0 and not state["boot_in_progress"]

            boot_service.hold_ipxe.clear()
            boot_service.open_session(mac)
            await network_boot(lab, "lab-004")
            await lab.wait_for("lab-004", lambda s: s["boot_in_progress"])
            await asyncio.sleep(0.3)
        # The lab stopped mid boot; started again from its state dir, the node boots again.
        boot_service.hold_ipxe.set()
        async with lab_in_process(lab_config(lab_dir)) as lab:
            state = await lab.wait_for("lab-004", lambda s: s["boots"] == 1)
            assert state["power"] == "on" and state["counters"]["power_on"] == 2
            assert (await lab.state("lab-001"))["bios"]["SysProfile"] == "PerfPerWattOptimizedDapc"
    finally:
        boot_service.hold_ipxe = None
