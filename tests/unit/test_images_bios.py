"""Vendor BIOS attribute maps."""

from __future__ import annotations

import pytest

from images import (
    BiosAttributeNotFound,
    BiosNamesRequired,
    BiosSetting,
    UnknownVendor,
    Vendor,
    bios_attributes_for,
    expected_bios_attributes,
    get_profile,
    setting_for_attribute,
    unmapped_settings,
    vendor_of,
)

PROFILE = get_profile("gpu-performance")


@pytest.mark.parametrize(
    ("text", "vendor"),
    [
        ("Dell Inc.", Vendor.DELL),
        ("HPE", Vendor.HPE),
        ("Hewlett Packard Enterprise", Vendor.HPE),
        ("Supermicro", Vendor.SUPERMICRO),
        ("Super Micro Computer, Inc.", Vendor.SUPERMICRO),
        ("Lenovo", Vendor.LENOVO),
        ("LENOVO", Vendor.LENOVO),
    ],
)
def test_vendor_strings(text: str, vendor: Vendor) -> None:
    assert vendor_of(text) is vendor


@pytest.mark.parametrize("text", ["Acme Servers", "", None])
def test_unknown_vendor_is_a_clear_error(text: str | None) -> None:
    with pytest.raises(UnknownVendor, match="no BIOS attribute map"):
        bios_attributes_for(PROFILE, text)  # type: ignore[arg-type]


def test_dell() -> None:
    assert bios_attributes_for(PROFILE, "Dell Inc.") == {
        "SysProfile": "Custom",
        "ProcPwrPerf": "MaxPerf",
        "ProcCStates": "Disabled",
        "ProcC1E": "Disabled",
        "NodeInterleave": "Disabled",
        "SubNumaCluster": "Disabled",
        "PcieAspmL1": "Disabled",
        "ProcVirtualization": "Disabled",
    }


def test_hpe_expands_per_slot_aspm_against_the_bmc_names() -> None:
    present = ["WorkloadProfile", "PciSlot1Aspm", "PciSlot2Aspm", "PciSlot1Enable"]
    attrs = bios_attributes_for(PROFILE, "HPE", present=present)
    assert attrs["WorkloadProfile"] == "Custom"
    assert attrs["PowerRegulator"] == "StaticHighPerf"
    assert attrs["MinProcIdlePower"] == "NoCStates"
    assert attrs["MinProcIdlePkgState"] == "NoState"
    assert attrs["NodeInterleaving"] == "Disabled"
    assert attrs["NumaGroupSizeOpt"] == "Clustered"
    assert attrs["SubNumaClustering"] == "Disabled"
    assert attrs["ProcVirtualization"] == "Disabled"
    assert attrs["PciSlot1Aspm"] == attrs["PciSlot2Aspm"] == "Disabled"
    assert "PciSlot1Enable" not in attrs
    with pytest.raises(BiosNamesRequired):
        bios_attributes_for(PROFILE, "HPE")
    with pytest.raises(BiosAttributeNotFound):
        bios_attributes_for(PROFILE, "HPE", present=["WorkloadProfile"])


def test_supermicro_resolves_board_suffixes() -> None:
    present = [
        "PowerTechnology#2800",
        "CPUC6Report#0840",
        "EnhancedHaltState(C1E)#0841",
        "PackageCState#0843",
        "IntelVirtualizationTechnology#3C2E",
        "QuietBoot#002E",
    ]
    assert bios_attributes_for(PROFILE, "Supermicro", present=present) == {
        "PowerTechnology#2800": "Disable",
        "CPUC6Report#0840": "Disable",
        "EnhancedHaltState(C1E)#0841": "Disable",
        "PackageCState#0843": "C0/C1 state",
        "IntelVirtualizationTechnology#3C2E": "Disable",
    }
    assert set(unmapped_settings("Supermicro")) == {
        BiosSetting.NODE_INTERLEAVE,
        BiosSetting.SUB_NUMA_CLUSTERING,
        BiosSetting.PCIE_ASPM,
    }


def test_lenovo_writes_the_preset_and_verifies_what_it_locks() -> None:
    attrs = bios_attributes_for(PROFILE, "Lenovo")
    assert attrs == {
        "OperatingModes_ChooseOperatingMode": "MaximumPerformance",
        "Memory_SocketInterleave": "NUMA",
        "Processors_SNC": "Disabled",
        "Power_ASPM": "Disabled",
        "Processors_IntelVirtualizationTechnology": "Disabled",
    }
    verified = {a.name: a.value for a in expected_bios_attributes(PROFILE, "Lenovo")}
    assert verified["Processors_CStates"] == "Disabled"
    assert verified["Processors_C1EnhancedMode"] == "Disabled"


def test_every_vendor_covers_performance_cstates_and_virtualization() -> None:
    needed = {BiosSetting.PERFORMANCE_PROFILE, BiosSetting.C_STATES, BiosSetting.CPU_VIRTUALIZATION}
    for vendor in Vendor:
        covered = {
            a.setting for a in expected_bios_attributes(PROFILE, vendor, present=_all_names(vendor))
        }
        assert needed <= covered, vendor
        assert covered | set(unmapped_settings(vendor)) == set(BiosSetting), vendor


def _all_names(vendor: Vendor) -> list[str]:
    return {
        Vendor.HPE: ["PciSlot1Aspm"],
        Vendor.SUPERMICRO: [
            "PowerTechnology#1",
            "CPUC6Report#2",
            "EnhancedHaltState(C1E)#3",
            "PackageCState#4",
            "IntelVirtualizationTechnology#5",
        ],
    }.get(vendor, [])


@pytest.mark.parametrize(
    ("vendor", "attribute", "setting"),
    [
        ("Dell Inc.", "ProcCStates", BiosSetting.C_STATES),
        ("HPE", "PciSlot7Aspm", BiosSetting.PCIE_ASPM),
        ("Supermicro", "IntelVirtualizationTechnology#3C2E", BiosSetting.CPU_VIRTUALIZATION),
        ("Lenovo", "Processors_SNC", BiosSetting.SUB_NUMA_CLUSTERING),
        ("Dell Inc.", "BootMode", None),
    ],
)
def test_inverse(vendor: str, attribute: str, setting: BiosSetting | None) -> None:
    assert setting_for_attribute(vendor, attribute) == setting
