"""What a booted node reports about itself when it phones home."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.storable import Storable


class Nic(BaseModel):
    name: str
    mac: str


class MountFact(BaseModel):
    source: str = Field(max_length=1280)
    target: str = Field(max_length=1024)
    fstype: str = Field(max_length=32)


class DiskWipe(BaseModel):
    """One disk as the cleaning agent wiped it, and what reading it back found."""

    device: str = Field(max_length=255, description="e.g. /dev/nvme0n1")
    size_bytes: int = Field(ge=0)
    method: Literal["nvme-format", "ata-secure-erase", "discard", "zero"] | None = Field(
        default=None, description="the strongest the device supports; None: nothing worked"
    )
    verified: bool = Field(description="sampled blocks read back as zeros after the wipe")
    error: str | None = Field(default=None, max_length=2000)


class CleanReport(BaseModel):
    """What a cleaning boot did (its agent's task `clean`)."""

    disks: list[DiskWipe] = Field(default_factory=list, max_length=256)


class Gpu(BaseModel):
    vendor: str = Field(max_length=64)
    model: str = Field(max_length=128)
    pci_address: str | None = Field(default=None, max_length=32)


class PciDevice(BaseModel):
    address: str = Field(max_length=32, description="domain:bus:device.function")
    vendor_id: str = Field(max_length=8, description="e.g. 0x10de")
    device_id: str = Field(max_length=8)
    class_code: str = Field(max_length=10, description="e.g. 0x030200 (3D controller)")


class Disk(BaseModel):
    device: str = Field(max_length=255)
    size_bytes: int = Field(ge=0)


class HardwareRecord(BaseModel):
    """What the agent's inspection found (its task `inspect`): the node's hardware record."""

    cpu_model: str | None = Field(default=None, max_length=255)
    cpus: int = Field(ge=0, description="logical CPUs")
    memory_bytes: int = Field(ge=0, description="MemTotal as the kernel counts it")
    disks: list[Disk] = Field(default_factory=list, max_length=256)
    nics: list[Nic] = Field(default_factory=list, max_length=64)
    gpus: list[Gpu] = Field(default_factory=list, max_length=64)
    pci_devices: list[PciDevice] = Field(default_factory=list, max_length=1024)
    ib_port_guids: list[str] = Field(default_factory=list, max_length=64)
    bios_version: str | None = Field(default=None, max_length=255)
    bmc_firmware_version: str | None = Field(
        default=None, max_length=255, description="read from the BMC by the platform, not the agent"
    )


class ToolRun(BaseModel):
    """A burn-in tool the agent ran, as it printed it (the platform judges it)."""

    tool: Literal["dcgmi", "memtester"] = Field(
        description="dcgmi: NVIDIA DCGM's `dcgmi diag -r N -j`; memtester: its last lines"
    )
    command: str = Field(max_length=255)
    exit_code: int
    output: str = Field(max_length=4_000_000)


class BurnIn(BaseModel):
    """What an inspection boot ran to exercise the node before it is given to tenants."""

    gpu_diag: ToolRun | None = None
    memtest: ToolRun | None = None


class DeployReport(BaseModel):
    """What a deploy boot did (its agent's task `deploy`): the image written to the disk,
    streamed, its checksum read back from the disk, and the bootloader installed."""

    device: str = Field(max_length=255, description="the disk written, e.g. /dev/vda")
    image_url: str = Field(max_length=2048)
    sha256: str | None = Field(
        default=None, description="of the image's bytes as the disk holds them"
    )
    bootloader: str | None = Field(
        default=None, max_length=255, description="the bootloader installed, by its version"
    )
    error: str | None = Field(default=None, max_length=2000)


class NodeFacts(Storable):
    """Facts a node's agent read from the running system (or a simulated node derived from what it
    received). The verifier compares them with the image's tuning profile."""

    kernel_cmdline: str = Field(description="The kernel command line the node booted with")
    kernel_sha256: str | None = Field(default=None, description="Digest of the kernel it fetched")
    initrd_sha256: str | None = Field(default=None, description="Digest of the initrd it fetched")
    cpu_governor: str | None = Field(
        default=None, description="cpufreq scaling governor in use; None: no cpufreq here"
    )
    hugepages: dict[str, int] = Field(
        default_factory=dict, description="Huge page size in kB -> pages reserved"
    )
    transparent_hugepage: str | None = Field(default=None, description="THP mode in use")
    iommu_mode: str | None = Field(
        default=None, description="'passthrough', 'translated' or 'off' as the kernel set it up"
    )
    bios: dict[str, str] = Field(
        default_factory=dict, description="BIOS attributes by the vendor's own names"
    )
    system_vendor: str | None = None
    system_model: str | None = None
    nics: list[Nic] = Field(default_factory=list)
    mounts: list[MountFact] = Field(
        default_factory=list, description="Network filesystems mounted (from /proc/mounts)"
    )
    clean: CleanReport | None = Field(
        default=None, description="A cleaning boot's report: every disk wiped and verified"
    )
    hardware: HardwareRecord | None = Field(
        default=None, description="An inspection boot's report: the node's hardware"
    )
    burn_in: BurnIn | None = Field(default=None, description="An inspection boot's burn-in")
    deploy: DeployReport | None = Field(
        default=None, description="A deploy boot's report: the image written to the disk"
    )
