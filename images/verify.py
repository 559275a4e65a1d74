"""Compare what a booted node reports (core.facts.NodeFacts) with its image and profile."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from core.facts import NodeFacts
from images.bios_vendors import expected_bios_attributes
from images.catalog import ImageDefinition
from images.cmdline import arg_key, arg_value, parse_cmdline
from images.errors import BiosNamesRequired, UnknownVendor, UnsupportedBiosValue
from images.tuning import TuningProfile

_IOMMU_MODES = {"passthrough": "passthrough", "translated": "translated", "off": "off"}


class Mismatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    expected: str | None
    actual: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def _shown(value: object) -> str:
    return "nothing" if value is None else repr(value)


def _mismatch(field: str, label: str, expected: object, actual: object) -> Mismatch:
    return Mismatch(
        field=field,
        expected=None if expected is None else str(expected),
        actual=None if actual is None else str(actual),
        message=f"{label}: expected {_shown(expected)}, got {_shown(actual)}",
    )


def _kernel_args(
    image: ImageDefinition, profile: TuningProfile, facts: NodeFacts
) -> list[Mismatch]:
    booted = parse_cmdline(facts.kernel_cmdline)
    out: list[Mismatch] = []
    for arg in profile.kernel_args(image.cpu_vendor):
        key, want = arg_key(arg), arg_value(arg)
        if key not in booted:
            out.append(
                Mismatch(
                    field=f"kernel_cmdline.{key}",
                    expected=want,
                    actual=None,
                    message=f"kernel argument {key}: expected {_shown(want)}, got nothing (absent)",
                )
            )
        elif booted[key] != want:
            out.append(
                _mismatch(f"kernel_cmdline.{key}", f"kernel argument {key}", want, booted[key])
            )
    return out


def _os(profile: TuningProfile, facts: NodeFacts) -> list[Mismatch]:
    os_ = profile.os
    out: list[Mismatch] = []
    if facts.iommu_mode != _IOMMU_MODES[os_.iommu]:
        out.append(_mismatch("iommu_mode", "iommu mode", os_.iommu, facts.iommu_mode))
    pages = os_.hugepages
    got = facts.hugepages.get(str(pages.size_kb), 0)
    if got != pages.count:
        out.append(
            Mismatch(
                field=f"hugepages.{pages.size_kb}",
                expected=str(pages.count),
                actual=str(got),
                message=f"huge pages {pages.size}: expected {pages.count}, got {got}",
            )
        )
    if facts.transparent_hugepage != os_.transparent_hugepage:
        out.append(
            _mismatch(
                "transparent_hugepage",
                "transparent huge pages",
                os_.transparent_hugepage,
                facts.transparent_hugepage,
            )
        )
    # None: the machine has no CPU frequency scaling (cpufreq), so no governor to set.
    if facts.cpu_governor is not None and facts.cpu_governor != os_.cpu_governor:
        out.append(_mismatch("cpu_governor", "cpu governor", os_.cpu_governor, facts.cpu_governor))
    return out


def _bios(profile: TuningProfile, facts: NodeFacts, vendor: str) -> list[Mismatch]:
    try:
        expected = expected_bios_attributes(profile, vendor, present=facts.bios.keys())
    except (UnknownVendor, UnsupportedBiosValue, BiosNamesRequired) as exc:
        # No map means nothing was checked: that must fail, not pass silently.
        return [
            Mismatch(
                field="bios",
                expected="a BIOS attribute map",
                actual=None,
                message=f"BIOS not verifiable: {exc}",
            )
        ]
    out: list[Mismatch] = []
    for attr in expected:
        actual = facts.bios.get(attr.name) if attr.found else None
        if actual != attr.value:
            out.append(_mismatch(f"bios.{attr.name}", f"BIOS {attr.name}", attr.value, actual))
    return out


def _digest(role: str, expected: str | None, actual: str | None) -> list[Mismatch]:
    if expected is None or (actual or "").lower() == expected.lower():
        return []
    return [
        Mismatch(
            field=f"{role}_sha256",
            expected=expected,
            actual=actual,
            message=f"{role} digest mismatch",
        )
    ]


def verify(
    image: ImageDefinition,
    profile: TuningProfile,
    facts: NodeFacts,
    *,
    vendor: str,
    expected_kernel_sha256: str | None,
    expected_initrd_sha256: str | None,
) -> list[Mismatch]:
    """Every way the node differs from what it should be; [] means verified. A None digest
    means "not known" and is not checked."""
    return [
        *_kernel_args(image, profile, facts),
        *_os(profile, facts),
        *_bios(profile, facts, vendor),
        *(_digest("kernel", expected_kernel_sha256, facts.kernel_sha256)
          if image.reports_digests else []),
        *(_digest("initrd", expected_initrd_sha256, facts.initrd_sha256)
          if image.reports_digests else []),
    ]  # fmt: skip
