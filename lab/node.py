"""State of one simulated GPU server: power, boot device, BIOS, counters and injected faults.

Mutations come from BMC simulator threads (pyghmi's loop, werkzeug workers) and from the lab's
asyncio loop, so every change happens under the node's lock and is written to its JSON file.
Power transitions are reported to a `PowerListener` (the lab's boot runner).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from lab.vendors import GPU_MODELS, VENDORS, profile_of

RECORDED = Path(__file__).with_name("recorded")  # real GPU diagnostics output (README.md)

Power = Literal["on", "off"]
BootDev = Literal["network", "disk", "none"]
FaultAction = Literal["drop", "fail"]


@dataclass
class Faults:
    drop_rate: float = 0.0  # 0..1: IPMI packets dropped / Redfish requests hung then closed
    delay_seconds: float = 0.0  # added before answering
    fail_next: int = 0  # next N commands answer busy (IPMI 0xC0, Redfish 503)
    ignore_soft_off: bool = False  # the OS never handles the ACPI power button
    wipe_fails: bool = False  # its disks answer I/O errors to a wipe (QEMU: attached read-only)
    gpus_missing: int = 0  # GPUs fallen off the bus: its inspection finds that many fewer
    gpu_diag_fails: bool = False  # its GPU diagnostic fails (NVIDIA's recorded failing run)


@dataclass
class Counters:
    """Side-effecting commands the BMC received (a retried call must not show up twice)."""

    power_on: int = 0
    power_off: int = 0
    soft_off: int = 0
    reset: int = 0
    set_boot: int = 0
    bios_patch: int = 0
    bios_reset: int = 0


@dataclass
class SimDisk:
    """A simulated node's disk: a name, a size and whether anything was written to it."""

    device: str
    size_bytes: int
    kind: Literal["nvme", "sata"] = "nvme"
    written: bool = False


def _lab_disks() -> list[SimDisk]:
    return [SimDisk(f"/dev/nvme{i}n1", 3_840_755_982_336) for i in range(2)]


class PowerListener(Protocol):
    def booting(self, node: SimNode, device: BootDev, generation: int) -> None: ...
    def resetting(self, node: SimNode, device: BootDev, generation: int) -> None: ...
    def stopped(self, node: SimNode) -> None: ...
    def soft_off_requested(self, node: SimNode, generation: int) -> None: ...


class UnknownBiosAttribute(ValueError):
    pass


@dataclass
class SimNode:
    node_id: str
    uuid: str
    vendor: str
    model: str
    gpu_vendor: str
    gpu_model: str
    gpu_count: int
    macs: list[str]
    protocol: Literal["ipmi", "redfish"]
    bios_defaults: dict[str, str]
    bios: dict[str, str]
    power: Power = "off"
    boot_device: BootDev = "none"
    boot_persistent: bool = False
    counters: Counters = field(default_factory=Counters)
    faults: Faults = field(default_factory=Faults)
    last_boot_error: str | None = None
    boots: int = 0  # phone-homes sent
    boot_in_progress: bool = False  # powered on into a network boot that has not finished
    os_up: bool = False  # an OS runs (handles ACPI soft-off)
    generation: int = 0  # bumped at each power transition: stale boot tasks notice
    netns: str | None = None  # where its NIC is (a fabric host): its cluster daemons run there
    cluster_error: str | None = None  # why its OS could not run its cluster role
    powered_on_at: float | None = None  # epoch seconds of the last power-on (or reset)
    disks: list[SimDisk] = field(default_factory=_lab_disks)
    agent_steps: list[str] = field(default_factory=list)  # what its last agent task ran, in order
    # The SSH keys its last boot's user-data installed (cloud-init's ssh_authorized_keys).
    authorized_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._listener: PowerListener | None = None
        self._console: Callable[[bytes], None] | None = None  # its BMC's SOL, when active
        self._state_file: Path | None = None
        self._random = random.Random(self.uuid)

    # -- construction and persistence -------------------------------------------------------

    @classmethod
    def create(
        cls, index: int, protocol: Literal["ipmi", "redfish"], gpu_model: str | None = None
    ) -> SimNode:
        """Node number index (1-based), deterministic in everything but runtime state. Its GPU
        model cycles through the lab's models in blocks of four, or is `gpu_model`."""
        profile = VENDORS[(index - 1) % len(VENDORS)]
        gpu = GPU_MODELS[(index - 1) // len(VENDORS) % len(GPU_MODELS)]
        if gpu_model is not None:
            (gpu,) = [g for g in GPU_MODELS if g[1] == gpu_model]
        gpu_vendor, gpu_model, gpu_count = gpu
        node_id = f"lab-{index:03d}"
        macs = [
            f"52:54:00:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}:{port:02x}" for port in (1, 2)
        ]
        return cls(
            node_id=node_id,
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"metalplane-lab/{node_id}")),
            vendor=profile.vendor,
            model=profile.model,
            gpu_vendor=gpu_vendor,
            gpu_model=gpu_model,
            gpu_count=gpu_count,
            macs=macs,
            protocol=protocol,
            bios_defaults=dict(profile.bios_defaults),
            bios=dict(profile.bios_defaults),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimNode:
        data = dict(data)
        data["counters"] = Counters(**data.get("counters", {}))
        data["faults"] = Faults(**data.get("faults", {}))
        if "disks" in data:
            data["disks"] = [SimDisk(**d) for d in data["disks"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self)

    def attach(self, listener: PowerListener | None, state_file: Path | None) -> None:
        self._listener = listener
        self._state_file = state_file

    def _save(self) -> None:
        # Called with the lock held, so files are written in the order changes happened.
        if self._state_file is None:
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        os.replace(tmp, self._state_file)

    # -- power ------------------------------------------------------------------------------

    def _consume_boot_device(self) -> BootDev:
        """What this power-on boots; a one-time override is used up (like real firmware)."""
        device = self.boot_device
        if not self.boot_persistent:
            self.boot_device = "none"
        return "disk" if device == "none" else device

    def _start_boot(self, *, reset: bool = False) -> None:
        self.powered_on_at = time.time()
        device = self._consume_boot_device()
        self.generation += 1
        self.os_up = False
        self.boot_in_progress = device == "network"
        self._save()
        if self._listener is not None:
            start = self._listener.resetting if reset else self._listener.booting
            start(self, device, self.generation)

    def power_on(self) -> None:
        with self._lock:
            self.counters.power_on += 1
            if self.power == "on":
                self._save()
                return
            self.power = "on"
            self._start_boot()

    def power_off(self) -> None:
        with self._lock:
            self.counters.power_off += 1
            self._halt()

    def _halt(self) -> None:
        was_on = self.power == "on"
        self.power = "off"
        self.generation += 1
        self.os_up = False
        self.boot_in_progress = False
        self._save()
        if was_on and self._listener is not None:
            self._listener.stopped(self)

    def press_power(self, state: Power) -> None:
        """Power changed outside the BMC (a technician, a PDU): no BMC command is counted."""
        with self._lock:
            if state == "off":
                self._halt()
            elif self.power != "on":
                self.power = "on"
                self._start_boot()

    def soft_off(self) -> None:
        """ACPI power button: only a running OS that handles it turns the node off."""
        with self._lock:
            self.counters.soft_off += 1
            self._save()
            if self.power == "on" and self.os_up and not self.faults.ignore_soft_off:
                if self._listener is not None:
                    self._listener.soft_off_requested(self, self.generation)

    def complete_soft_off(self, generation: int) -> None:
        with self._lock:
            if self.generation == generation and self.power == "on":
                self._halt()

    def reset(self) -> None:
        with self._lock:
            self.counters.reset += 1
            was_on, self.power = self.power == "on", "on"
            self._start_boot(reset=was_on)  # from off, a reset powers the node on

    # -- boot device ------------------------------------------------------------------------

    def set_boot(self, device: BootDev, persistent: bool) -> None:
        with self._lock:
            self.counters.set_boot += 1
            self.boot_device = device
            self.boot_persistent = persistent if device != "none" else False
            self._save()

    # -- boot progress (from the boot runner) -----------------------------------------------

    def boot_finished(self, generation: int, *, error: str | None, phoned_home: bool) -> None:
        with self._lock:
            if generation != self.generation:
                return  # powered off or reset meanwhile
            self.boot_in_progress = False
            self.last_boot_error = error
            if phoned_home:
                self.boots += 1
            # After a failed network boot the firmware falls back to the disk.
            self.os_up = True
            self._save()

    def set_netns(self, netns: str | None) -> None:
        with self._lock:
            self.netns = netns
            self._save()

    def set_cluster_error(self, error: str | None) -> None:
        with self._lock:
            self.cluster_error = error
            self._save()

    # -- disks (what the cleaning agent of a simulated node does to them) -----------------------

    def wipe_disks(self) -> list[dict[str, Any]]:
        """Each disk as core.facts.DiskWipe: NVMe formatted, SATA secure-erased (their
        strongest method); with the `wipe_fails` fault, an I/O error and the data left."""
        with self._lock:
            wiped = []
            for disk in self.disks:
                method = "nvme-format" if disk.kind == "nvme" else "ata-secure-erase"
                if self.faults.wipe_fails:
                    wiped.append({
                        "device": disk.device, "size_bytes": disk.size_bytes, "method": None,
                        "verified": False, "error": f"{method}: I/O error (lab fault wipe_fails)",
                    })  # fmt: skip
                    continue
                disk.written = False
                wiped.append({
                    "device": disk.device, "size_bytes": disk.size_bytes, "method": method,
                    "verified": True,
                })  # fmt: skip
            self._save()
            return wiped

    def inspect(self) -> dict[str, Any]:
        """The node's hardware as core.facts.HardwareRecord: what its agent would find."""
        with self._lock:
            pci_vendor = {"NVIDIA": "0x10de", "AMD": "0x1002"}.get(self.gpu_vendor, "0x8086")
            present = max(0, self.gpu_count - self.faults.gpus_missing)
            addresses = [f"0000:{0x18 + 0x10 * i:02x}:00.0" for i in range(present)]
            return {
                "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
                "cpus": 224,
                "memory_bytes": 2 * 2**40 - 2**30,  # 2 TiB installed, less the firmware's
                "disks": [{"device": d.device, "size_bytes": d.size_bytes} for d in self.disks],
                "nics": [{"name": f"eth{i}", "mac": m} for i, m in enumerate(self.macs)],
                "gpus": [
                    {"vendor": self.gpu_vendor, "model": self.gpu_model, "pci_address": a}
                    for a in addresses
                ],
                "pci_devices": [
                    {
                        "address": a,
                        "vendor_id": pci_vendor,
                        "device_id": "0x2330",
                        "class_code": "0x030200",
                    }
                    for a in addresses
                ],
                "ib_port_guids": [],
                "bios_version": "lab-2.1",
            }

    def burn_in(self) -> dict[str, Any]:
        """What the node's agent runs to exercise it (core.facts.BurnIn): on NVIDIA GPUs,
        DCGM's diagnostic, whose output is a recording of a real run (lab/recorded)."""
        with self._lock:
            if self.gpu_vendor != "NVIDIA" or self.gpu_count == 0:
                return {}
            failing = self.faults.gpu_diag_fails
        name = "nvvs-per-gpu-fail.json" if failing else "dcgmi-diag-r4-dcgm4-test-object.json"
        output = (RECORDED / name).read_text()
        return {
            "gpu_diag": {"tool": "dcgmi", "command": "dcgmi diag -r 1 -j",
                         "exit_code": 226 if failing else 0, "output": output}
        }  # fmt: skip

    def attach_console(self, sink: Callable[[bytes], None] | None) -> None:
        """Where its serial output goes (the BMC simulator's Serial-over-LAN)."""
        self._console = sink

    def print_console(self, line: str) -> None:
        sink = self._console
        if sink is not None:
            sink(f"{line}\r\n".encode())

    def ran_agent_steps(self, steps: list[str]) -> None:
        with self._lock:
            self.agent_steps = list(steps)
            self._save()

    def installed_keys(self, keys: list[str]) -> None:
        with self._lock:
            self.authorized_keys = list(keys)
            self._save()

    def write_disks(self) -> None:
        """A tenant's workload wrote to every disk."""
        with self._lock:
            for disk in self.disks:
                disk.written = True
            self._save()

    # -- BIOS -------------------------------------------------------------------------------

    def patch_bios(self, changes: dict[str, Any]) -> None:
        with self._lock:
            unknown = sorted(set(changes) - set(self.bios_defaults))
            if unknown:
                raise UnknownBiosAttribute(f"unknown BIOS attributes: {', '.join(unknown)}")
            self.counters.bios_patch += 1
            updated = self.bios | {k: str(v) for k, v in changes.items()}
            self.bios = profile_of(self.vendor).with_presets(updated)
            self._save()

    def reset_bios(self) -> None:
        with self._lock:
            self.counters.bios_reset += 1
            self.bios = dict(self.bios_defaults)
            self._save()

    def bios_snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.bios)

    # -- faults -----------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._save()

    def roll_drop(self) -> bool:
        with self._lock:
            rate = self.faults.drop_rate
        return rate > 0 and self._random.random() < rate

    def take_failure(self) -> bool:
        """True if this command must answer busy (consumes one of fail_next)."""
        with self._lock:
            if self.faults.fail_next <= 0:
                return False
            self.faults.fail_next -= 1
            self._save()
            return True

    @property
    def delay(self) -> float:
        with self._lock:
            return max(0.0, self.faults.delay_seconds)

    # -- views ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.node_id,
                "protocol": self.protocol,
                "power": self.power,
                "boot_device": self.boot_device,
                "boot_persistent": self.boot_persistent,
                "bios": dict(self.bios),
                "counters": asdict(self.counters),
                "faults": asdict(self.faults),
                "last_boot_error": self.last_boot_error,
                "boots": self.boots,
                "boot_in_progress": self.boot_in_progress,
                "os_up": self.os_up,
                "netns": self.netns,
                "cluster_error": self.cluster_error,
                "powered_on_at": self.powered_on_at,
                "disks": [asdict(d) for d in self.disks],
                "agent_steps": list(self.agent_steps),
                "authorized_keys": list(self.authorized_keys),
            }
