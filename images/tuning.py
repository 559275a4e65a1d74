"""Tuning profiles: BIOS settings stated abstractly plus OS settings, and the kernel arguments
the OS settings imply. Profiles live in images/profiles/<name>.yaml."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from images.errors import UnknownProfile

PROFILES_DIR = Path(__file__).parent / "profiles"

Toggle = Literal["enabled", "disabled"]
CpuVendor = Literal["intel", "amd", "any"]
HugePageSize = Literal["2M", "1G"]

# Kernel page size names -> kB, the unit of /sys/kernel/mm/hugepages and NodeFacts.hugepages.
HUGEPAGE_KB: dict[str, int] = {"2M": 2048, "1G": 1048576}


class BiosTuning(BaseModel):
    """BIOS settings in vendor-neutral terms; images.bios_vendors maps them to real names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    performance_profile: Literal["maximum_performance"] = "maximum_performance"
    c_states: Toggle = "disabled"
    node_interleave: Toggle = Field(
        default="disabled", description="disabled = NUMA exposed to the OS"
    )
    sub_numa_clustering: Toggle = "disabled"
    pcie_aspm: Toggle = "disabled"
    cpu_virtualization: Toggle = "disabled"


class HugePages(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: HugePageSize = "1G"
    count: int = Field(ge=0)

    @property
    def size_kb(self) -> int:
        return HUGEPAGE_KB[self.size]


class OsTuning(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_governor: str = "performance"
    hugepages: HugePages
    iommu: Literal["passthrough", "translated", "off"] = "passthrough"
    transparent_hugepage: Literal["always", "madvise", "never"] = "never"


class TuningProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    bios: BiosTuning = BiosTuning()
    os: OsTuning

    def kernel_args(self, cpu_vendor: CpuVendor) -> list[str]:
        """Kernel arguments that put the OS settings in place at boot."""
        args: list[str] = []
        args += _iommu_args(self.os.iommu, cpu_vendor)
        pages = self.os.hugepages
        if pages.count:
            args += [
                f"hugepagesz={pages.size}",
                f"hugepages={pages.count}",
                f"default_hugepagesz={pages.size}",
            ]
        args.append(f"transparent_hugepage={self.os.transparent_hugepage}")
        if self.bios.c_states == "disabled":
            # The kernel caps idle states too: a BIOS that ignored the setting still idles shallow.
            args += ["processor.max_cstate=1", "intel_idle.max_cstate=0"]
        return args


def _iommu_args(mode: str, cpu_vendor: CpuVendor) -> list[str]:
    vendors = ["intel", "amd"] if cpu_vendor == "any" else [cpu_vendor]
    # amd_iommu has no "on" value (the AMD driver is on by default and ignores it); it is kept
    # so the command line states the intent the same way for both vendors.
    switch = "off" if mode == "off" else "on"
    args = [f"{v}_iommu={switch}" for v in vendors]
    if mode == "passthrough":
        args.insert(0, "iommu=pt")
    return args


@cache
def load_profiles() -> dict[str, TuningProfile]:
    profiles: dict[str, TuningProfile] = {}
    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        profile = TuningProfile.model_validate(yaml.safe_load(path.read_text()))
        if profile.name != path.stem:
            raise ValueError(f"{path}: profile name {profile.name!r} differs from the file name")
        profiles[profile.name] = profile
    return profiles


def get_profile(name: str) -> TuningProfile:
    profiles = load_profiles()
    try:
        return profiles[name]
    except KeyError:
        raise UnknownProfile(name, list(profiles)) from None
