"""Vendor profiles of the simulated servers: model and factory-default (untuned) BIOS."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VendorProfile:
    vendor: str
    model: str
    # Attribute names as each vendor's Redfish Bios resource spells them.
    bios_defaults: dict[str, str] = field(default_factory=dict)
    # Presets that force dependent attributes: (attribute, value) -> what it sets.
    bios_presets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def with_presets(self, bios: dict[str, str]) -> dict[str, str]:
        """The BIOS after the firmware applied the presets now selected."""
        forced = dict(bios)
        for (name, value), effects in self.bios_presets.items():
            if forced.get(name) == value:
                forced.update(effects)
        return forced


# Factory defaults (untuned: power-efficiency presets, C-states on) under the attribute names
# of each vendor's Redfish BIOS registry for Intel GPU servers, as public BIOS dumps show them
# (see images/bios_vendors.py for the sources). The lab keeps its own copy on purpose: it
# stands in for hardware, so a wrong name in the platform's maps fails against it.
VENDORS: tuple[VendorProfile, ...] = (
    VendorProfile(
        "Dell Inc.",
        "PowerEdge XE9680",
        {
            "SysProfile": "PerfPerWattOptimizedDapc",
            "ProcPwrPerf": "SysDbpm",
            "ProcCStates": "Enabled",
            "ProcC1E": "Enabled",
            "SubNumaCluster": "Disabled",
            "NodeInterleave": "Disabled",
            "PcieAspmL1": "Enabled",
            "ProcVirtualization": "Enabled",
            "SriovGlobalEnable": "Disabled",
            "LogicalProc": "Enabled",
            "BootMode": "Uefi",
        },
    ),
    VendorProfile(
        "HPE",
        "ProLiant XD670",
        {
            "WorkloadProfile": "GeneralPowerEfficientCompute",
            "PowerRegulator": "DynamicPowerSavings",
            "MinProcIdlePower": "C6",
            "MinProcIdlePkgState": "C6Retention",
            "NodeInterleaving": "Disabled",
            "NumaGroupSizeOpt": "Flat",
            "SubNumaClustering": "Disabled",
            "PciSlot1Aspm": "Auto",
            "PciSlot2Aspm": "Auto",
            "PciSlot3Aspm": "Auto",
            "PciSlot4Aspm": "Auto",
            "ProcVirtualization": "Enabled",
            "Sriov": "Disabled",
            "ProcHyperthreading": "Enabled",
            "BootMode": "Uefi",
        },
    ),
    VendorProfile(
        "Supermicro",
        "SYS-821GE-TNHR",
        {
            "PowerTechnology#2800": "Energy Efficient",
            "CPUC6Report#0840": "Auto",
            "EnhancedHaltState(C1E)#0841": "Enable",
            "PackageCState#0843": "Auto",
            "IntelVirtualizationTechnology#3C2E": "Enable",
            "SR-IOVSupport#0088": "Disable",
            "BootMode#0004": "UEFI",
        },
    ),
    VendorProfile(
        "Lenovo",
        "ThinkSystem SR670 V2",
        {
            "OperatingModes_ChooseOperatingMode": "EfficiencyFavorPerformance",
            "Processors_CStates": "Enabled",
            "Processors_C1EnhancedMode": "Enabled",
            "Memory_SocketInterleave": "NUMA",
            "Processors_SNC": "Disabled",
            "Power_ASPM": "Auto",
            "Processors_IntelVirtualizationTechnology": "Enabled",
            "DevicesandIOPorts_SRIOV": "Disabled",
            "BootModes_SystemBootMode": "UEFIMode",
        },
        # XCC's Maximum Performance mode turns C-states and C1E off and locks them.
        {
            ("OperatingModes_ChooseOperatingMode", "MaximumPerformance"): {
                "Processors_CStates": "Disabled",
                "Processors_C1EnhancedMode": "Disabled",
            }
        },
    ),
)

GPU_MODELS: tuple[tuple[str, str, int], ...] = (
    ("NVIDIA", "H100 80GB HBM3", 8),
    ("NVIDIA", "H200 141GB HBM3e", 8),
    ("AMD", "Instinct MI300X", 8),
    ("NVIDIA", "L40S", 4),
)


def profile_of(vendor: str) -> VendorProfile:
    return next(p for p in VENDORS if p.vendor == vendor)
