"""The verifier: a correct node passes, each kind of drift is reported."""

from __future__ import annotations

import pytest

from core.facts import NodeFacts
from images import bios_attributes_for, expected_bios_attributes, get_image, render_ipxe, verify
from images.cmdline import parse_cmdline

IMAGE = get_image("lab-sim")
PROFILE = IMAGE.profile
KERNEL_SHA = "a" * 64
INITRD_SHA = "b" * 64


def good_facts(**changes: object) -> NodeFacts:
    script = render_ipxe(
        IMAGE, PROFILE, public_url="http://127.0.0.1:8000", mac="52:54:00:12:34:56"
    )
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    bios = {a.name: a.value for a in expected_bios_attributes(PROFILE, "Dell Inc.")}
    facts = NodeFacts(
        kernel_cmdline=" ".join(kernel_line.split()[2:]),
        kernel_sha256=KERNEL_SHA,
        initrd_sha256=INITRD_SHA,
        cpu_governor="performance",
        hugepages={"1048576": 16},
        transparent_hugepage="always",
        iommu_mode="passthrough",
        bios=bios,
        system_vendor="Dell Inc.",
    )
    return facts.model_copy(update=changes)


def run(facts: NodeFacts, vendor: str = "Dell Inc.") -> list[str]:
    return [
        str(m)
        for m in verify(
            IMAGE,
            PROFILE,
            facts,
            vendor=vendor,
            expected_kernel_sha256=KERNEL_SHA,
            expected_initrd_sha256=INITRD_SHA,
        )
    ]


def test_correct_node_verifies() -> None:
    assert run(good_facts()) == []


def test_wrong_kernel_argument_value_and_absent_argument() -> None:
    cmdline = good_facts().kernel_cmdline.replace("iommu=pt", "iommu=off")
    cmdline = cmdline.replace(" transparent_hugepage=always", "")
    assert run(good_facts(kernel_cmdline=cmdline)) == [
        "kernel argument iommu: expected 'pt', got 'off'",
        "kernel argument transparent_hugepage: expected 'always', got nothing (absent)",
    ]


def test_os_state_mismatches() -> None:
    facts = good_facts(
        iommu_mode="translated",
        hugepages={},
        transparent_hugepage="never",
        cpu_governor="schedutil",
    )
    assert run(facts) == [
        "iommu mode: expected 'passthrough', got 'translated'",
        "huge pages 1G: expected 16, got 0",
        "transparent huge pages: expected 'always', got 'never'",
        "cpu governor: expected 'performance', got 'schedutil'",
    ]


def test_bios_mismatch_and_missing_attribute() -> None:
    bios = dict(good_facts().bios, ProcCStates="Enabled")
    del bios["PcieAspmL1"]
    mismatches = verify(
        IMAGE,
        PROFILE,
        good_facts(bios=bios),
        vendor="Dell Inc.",
        expected_kernel_sha256=None,
        expected_initrd_sha256=None,
    )
    assert [str(m) for m in mismatches] == [
        "BIOS ProcCStates: expected 'Disabled', got 'Enabled'",
        "BIOS PcieAspmL1: expected 'Disabled', got nothing",
    ]
    assert mismatches[0].field == "bios.ProcCStates"
    assert (mismatches[0].expected, mismatches[0].actual) == ("Disabled", "Enabled")


def test_digest_mismatches() -> None:
    facts = good_facts(kernel_sha256="c" * 64, initrd_sha256=None)
    assert run(facts) == ["kernel digest mismatch", "initrd digest mismatch"]


def test_unknown_vendor_fails_verification_instead_of_skipping_bios() -> None:
    assert run(good_facts(), vendor="Acme Servers") == [
        "BIOS not verifiable: no BIOS attribute map for system vendor 'Acme Servers' "
        "(known: Dell, HPE, Supermicro, Lenovo)"
    ]


@pytest.mark.parametrize("vendor", ["HPE", "Supermicro", "Lenovo"])
def test_other_vendors_verify_against_their_own_names(vendor: str) -> None:
    names = {
        "HPE": ["PciSlot1Aspm", "PciSlot2Aspm"],
        "Supermicro": [
            "PowerTechnology#2800",
            "CPUC6Report#0840",
            "EnhancedHaltState(C1E)#0841",
            "PackageCState#0843",
            "IntelVirtualizationTechnology#3C2E",
        ],
        "Lenovo": [],
    }[vendor]
    bios = {a.name: a.value for a in expected_bios_attributes(PROFILE, vendor, present=names)}
    assert run(good_facts(bios=bios), vendor=vendor) == []
    first = next(iter(bios_attributes_for(PROFILE, vendor, present=names)))
    drifted = dict(bios, **{first: "Drifted"})
    assert run(good_facts(bios=drifted), vendor=vendor) == [
        f"BIOS {first}: expected {bios[first]!r}, got 'Drifted'"
    ]


def test_booted_cmdline_parses_like_the_kernel() -> None:
    assert parse_cmdline("a=1 flag a=2")["a"] == "2"
    assert parse_cmdline("a=1 flag")["flag"] is None


def test_a_machine_without_frequency_scaling_has_no_governor_to_check() -> None:
    assert run(good_facts(cpu_governor=None)) == []
