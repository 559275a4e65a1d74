"""Abstract BIOS settings -> the real Redfish BIOS attribute names and values of each vendor.

The maps cover Intel Xeon platforms (Dell PowerEdge 15G/16G, HPE ProLiant Gen10/Gen11,
Supermicro X12/X13, Lenovo ThinkSystem V2/V3): CPU-specific attributes (virtualization,
sub-NUMA clustering) have other names on AMD boards, which these maps do not carry.

Every entry is written as well as verified unless `apply` is False: those are fixed by a
vendor preset that the map also writes, and the BMC rejects writes to them while it is set.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from images.errors import (
    BiosAttributeNotFound,
    BiosNamesRequired,
    UnknownVendor,
    UnsupportedBiosValue,
)
from images.tuning import BiosTuning, TuningProfile


class BiosSetting(StrEnum):
    PERFORMANCE_PROFILE = "performance_profile"
    C_STATES = "c_states"
    NODE_INTERLEAVE = "node_interleave"
    SUB_NUMA_CLUSTERING = "sub_numa_clustering"
    PCIE_ASPM = "pcie_aspm"
    CPU_VIRTUALIZATION = "cpu_virtualization"


class Vendor(StrEnum):
    DELL = "dell"
    HPE = "hpe"
    SUPERMICRO = "supermicro"
    LENOVO = "lenovo"


class VendorAttribute(BaseModel):
    """One BMC attribute that carries (part of) an abstract setting."""

    model_config = ConfigDict(frozen=True)

    setting: BiosSetting
    name: str
    values: dict[str, str]  # abstract value ("enabled", "maximum_performance"...) -> BMC value
    # exact: the name as is. suffixed: Supermicro's `Name#XXXX`, the suffix differs per board.
    # slots: one attribute per PCIe slot, `{n}` standing for the slot number.
    match: Literal["exact", "suffixed", "slots"] = "exact"
    apply: bool = True

    @property
    def display_name(self) -> str:
        if self.match == "suffixed":
            return f"{self.name}#*"
        return self.name.replace("{n}", "*")

    def matches(self, attribute: str) -> bool:
        if self.match == "exact":
            return attribute == self.name
        if self.match == "suffixed":
            return attribute.split("#", 1)[0] == self.name
        pattern = re.escape(self.name).replace(re.escape("{n}"), r"\d+")
        return re.fullmatch(pattern, attribute) is not None

    def resolve(self, present: Collection[str] | None) -> list[str]:
        """The BMC's names for this attribute ([] when a patterned one is absent)."""
        if self.match == "exact":
            return [self.name]
        if present is None:
            raise BiosNamesRequired(
                f"{self.display_name} ({self.setting}) is named per board; pass the BMC's "
                "current BIOS attribute names to resolve it"
            )
        return sorted(name for name in present if self.matches(name))


def _a(
    setting: BiosSetting, name: str, apply: bool = True, match: str = "exact", **values: str
) -> VendorAttribute:
    return VendorAttribute(setting=setting, name=name, values=values, apply=apply, match=match)


S = BiosSetting

# Dell iDRAC9, PowerEdge 15G/16G Intel. Names: NVIDIA libredfish OemDellBiosAttributes
# (src/model/oem/dell.rs: SysProfile, ProcPwrPerf, ProcCStates, ProcC1E, PcieAspmL1,
# NodeInterleave, SubNumaCluster, ProcVirtualization); values: Dell BIOS exports and
# Redfish dumps in public tuning guides (SysProfile Custom, ProcPwrPerf OsDbpm/MaxPerf,
# PcieAspmL1 Disabled, SubNumaCluster Disabled). SysProfile=Custom because the Dell
# presets make ProcCStates/ProcC1E/PcieAspmL1 read-only.
DELL: tuple[VendorAttribute, ...] = (
    _a(S.PERFORMANCE_PROFILE, "SysProfile", maximum_performance="Custom"),
    _a(S.PERFORMANCE_PROFILE, "ProcPwrPerf", maximum_performance="MaxPerf"),
    _a(S.C_STATES, "ProcCStates", enabled="Enabled", disabled="Disabled"),
    _a(S.C_STATES, "ProcC1E", enabled="Enabled", disabled="Disabled"),
    _a(S.NODE_INTERLEAVE, "NodeInterleave", enabled="Enabled", disabled="Disabled"),
    _a(S.SUB_NUMA_CLUSTERING, "SubNumaCluster", disabled="Disabled"),
    _a(S.PCIE_ASPM, "PcieAspmL1", enabled="Enabled", disabled="Disabled"),
    _a(S.CPU_VIRTUALIZATION, "ProcVirtualization", enabled="Enabled", disabled="Disabled"),
)

# HPE iLO 5/6, ProLiant Gen10/Gen11 Intel. Names and values: HPE iLO Redfish BIOS dumps
# (BiosAttributeRegistryH10: WorkloadProfile Custom, PowerRegulator StaticHighPerf,
# MinProcIdlePower NoCStates, MinProcIdlePkgState NoState, NodeInterleaving,
# NumaGroupSizeOpt Clustered, SubNumaClustering, ProcVirtualization, PciSlot<n>Aspm),
# HPE OneView server-profile templates (same names/values), HPE python-redfish-utility
# examples (PowerRegulator values). WorkloadProfile=Custom because a named workload
# profile makes its dependent options not writable (Base.1.0:PropertyNotWritable).
# ASPM has no global switch on these servers: it is set per PCIe slot.
HPE: tuple[VendorAttribute, ...] = (
    _a(S.PERFORMANCE_PROFILE, "WorkloadProfile", maximum_performance="Custom"),
    _a(S.PERFORMANCE_PROFILE, "PowerRegulator", maximum_performance="StaticHighPerf"),
    _a(S.C_STATES, "MinProcIdlePower", enabled="C6", disabled="NoCStates"),
    _a(S.C_STATES, "MinProcIdlePkgState", enabled="C6Retention", disabled="NoState"),
    _a(S.NODE_INTERLEAVE, "NodeInterleaving", enabled="Enabled", disabled="Disabled"),
    # Clustered: NUMA nodes follow the sockets' real topology instead of a flat grouping.
    _a(S.NODE_INTERLEAVE, "NumaGroupSizeOpt", disabled="Clustered"),
    _a(S.SUB_NUMA_CLUSTERING, "SubNumaClustering", enabled="Enabled", disabled="Disabled"),
    _a(S.PCIE_ASPM, "PciSlot{n}Aspm", match="slots", disabled="Disabled"),
    _a(S.CPU_VIRTUALIZATION, "ProcVirtualization", enabled="Enabled", disabled="Disabled"),
)

# Supermicro X12/X13 (AMI Aptio BIOS behind the Supermicro BMC's Redfish). Attribute names
# carry a per-board `#XXXX` suffix (e.g. IntelVirtualizationTechnology#3C2E), so they are
# resolved against the BMC's names. Sources: NVIDIA libredfish src/supermicro.rs
# (IntelVirtualizationTechnology#3C2E Enable/Disable, name map by stem), Ansible role
# jeisenbath.supermicro.bios README (PowerTechnology#2800 Disable, CPUC6Report#0840 Disable,
# EnhancedHaltState(C1E)#0841 Disable, PackageCState#0843 "C0/C1 state"). NUMA, sub-NUMA and
# ASPM: no public source found for their Redfish names, so they are not mapped (see UNMAPPED).
SUPERMICRO: tuple[VendorAttribute, ...] = (
    # "Disable" turns off the power-saving technologies (EIST/C-state management) altogether.
    _a(S.PERFORMANCE_PROFILE, "PowerTechnology", match="suffixed", maximum_performance="Disable"),
    _a(S.C_STATES, "CPUC6Report", match="suffixed", enabled="Enable", disabled="Disable"),
    _a(
        S.C_STATES, "EnhancedHaltState(C1E)", match="suffixed", enabled="Enable", disabled="Disable"
    ),
    _a(S.C_STATES, "PackageCState", match="suffixed", disabled="C0/C1 state"),
    _a(
        S.CPU_VIRTUALIZATION,
        "IntelVirtualizationTechnology",
        match="suffixed",
        enabled="Enable",
        disabled="Disable",
    ),
)

# Lenovo XCC/XCC2, ThinkSystem V2/V3 Intel. Names and values: Lenovo BIOS Redfish dump of
# an SR670 V2 in NVIDIA libredfish (src/model/testdata/bios_lenovo.json:
# OperatingModes_ChooseOperatingMode, Processors_CStates, Processors_C1EnhancedMode,
# Power_ASPM, Memory_SocketInterleave NUMA, Processors_SNC,
# Processors_IntelVirtualizationTechnology), lenovo/python-redfish-lenovo examples
# (OperatingModes_ChooseOperatingMode MaximumPerformance). The MaximumPerformance preset sets
# C-states and C1E off and locks them, so those are verified, not written. Values are
# Enabled/Disabled from Cascade Lake on (Skylake-era UEFI said Enable/Disable).
LENOVO: tuple[VendorAttribute, ...] = (
    _a(
        S.PERFORMANCE_PROFILE,
        "OperatingModes_ChooseOperatingMode",
        maximum_performance="MaximumPerformance",
    ),
    _a(S.C_STATES, "Processors_CStates", apply=False, disabled="Disabled"),
    _a(S.C_STATES, "Processors_C1EnhancedMode", apply=False, disabled="Disabled"),
    _a(S.NODE_INTERLEAVE, "Memory_SocketInterleave", enabled="Non-NUMA", disabled="NUMA"),
    _a(S.SUB_NUMA_CLUSTERING, "Processors_SNC", disabled="Disabled"),
    _a(S.PCIE_ASPM, "Power_ASPM", enabled="Enabled", disabled="Disabled"),
    _a(
        S.CPU_VIRTUALIZATION,
        "Processors_IntelVirtualizationTechnology",
        enabled="Enabled",
        disabled="Disabled",
    ),
)

VENDOR_MAPS: dict[Vendor, tuple[VendorAttribute, ...]] = {
    Vendor.DELL: DELL,
    Vendor.HPE: HPE,
    Vendor.SUPERMICRO: SUPERMICRO,
    Vendor.LENOVO: LENOVO,
}

# Settings a vendor map cannot express, and why: callers must not read their absence as "ok".
UNMAPPED: dict[Vendor, dict[BiosSetting, str]] = {
    Vendor.SUPERMICRO: {
        S.NODE_INTERLEAVE: "no public source for the X12/X13 Redfish attribute name",
        S.SUB_NUMA_CLUSTERING: "no public source for the X12/X13 Redfish attribute name",
        S.PCIE_ASPM: "no public source for the X12/X13 Redfish attribute name",
    },
}

_VENDOR_PATTERNS: tuple[tuple[Vendor, re.Pattern[str]], ...] = (
    (Vendor.DELL, re.compile(r"\bdell\b")),
    (Vendor.HPE, re.compile(r"\bhpe\b|hewlett[ -]?packard|^hp$")),
    (Vendor.SUPERMICRO, re.compile(r"super ?micro")),
    (Vendor.LENOVO, re.compile(r"\blenovo\b")),
)


def vendor_of(system_vendor: str | None) -> Vendor:
    """The map for a Redfish/SMBIOS system vendor string ("Dell Inc.", "HPE", "Lenovo"...)."""
    text = (system_vendor or "").strip().lower()
    for vendor, pattern in _VENDOR_PATTERNS:
        if pattern.search(text):
            return vendor
    raise UnknownVendor(system_vendor)


class ExpectedAttribute(BaseModel):
    """A BMC attribute with the value the profile needs, resolved to the BMC's own name."""

    model_config = ConfigDict(frozen=True)

    setting: BiosSetting
    name: str
    value: str
    apply: bool
    found: bool = True  # False: a patterned attribute none of the BMC's names matched


def expected_bios_attributes(
    profile: TuningProfile | BiosTuning,
    vendor: str | Vendor,
    *,
    present: Collection[str] | None = None,
) -> list[ExpectedAttribute]:
    """Every attribute (written or preset-fixed) the profile implies on this vendor's BMC.
    `present` is the BMC's attribute names; needed for per-board or per-slot names."""
    bios = profile.bios if isinstance(profile, TuningProfile) else profile
    key = vendor if isinstance(vendor, Vendor) else vendor_of(vendor)
    out: list[ExpectedAttribute] = []
    for attr in VENDOR_MAPS[key]:
        wanted = getattr(bios, attr.setting.value)
        if wanted not in attr.values:
            raise UnsupportedBiosValue(
                f"{key.value}: {attr.display_name} has no value for {attr.setting}={wanted}"
            )
        value = attr.values[wanted]
        names = attr.resolve(present)
        if not names:
            out.append(
                ExpectedAttribute(
                    setting=attr.setting,
                    name=attr.display_name,
                    value=value,
                    apply=attr.apply,
                    found=False,
                )
            )
        out += [
            ExpectedAttribute(setting=attr.setting, name=n, value=value, apply=attr.apply)
            for n in names
        ]
    return out


def bios_attributes_for(
    profile: TuningProfile | BiosTuning,
    vendor: str | Vendor,
    *,
    present: Collection[str] | None = None,
) -> dict[str, str]:
    """Attributes to PATCH into the BMC's BIOS settings so it boots with the profile."""
    out: dict[str, str] = {}
    for attr in expected_bios_attributes(profile, vendor, present=present):
        if not attr.found:
            raise BiosAttributeNotFound(
                f"{attr.name} ({attr.setting}) is not among the BMC's BIOS attributes"
            )
        if attr.apply:
            out[attr.name] = attr.value
    return out


def setting_for_attribute(vendor: str | Vendor, attribute: str) -> BiosSetting | None:
    """The abstract setting a vendor attribute carries (the inverse of the maps)."""
    key = vendor if isinstance(vendor, Vendor) else vendor_of(vendor)
    for attr in VENDOR_MAPS[key]:
        if attr.matches(attribute):
            return attr.setting
    return None


def unmapped_settings(vendor: str | Vendor) -> dict[BiosSetting, str]:
    key = vendor if isinstance(vendor, Vendor) else vendor_of(vendor)
    return dict(UNMAPPED.get(key, {}))
