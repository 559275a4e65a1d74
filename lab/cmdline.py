"""Parse an iPXE script and derive facts from a kernel command line like Linux would."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class BootConfigError(Exception):
    """The boot configuration the node received is unusable: it must not phone home."""


@dataclass(frozen=True)
class IpxeScript:
    kernel_url: str
    kernel_args: str
    initrd_url: str | None


def parse_ipxe(text: str) -> IpxeScript:
    lines = [line.strip() for line in text.splitlines()]
    if not lines or not lines[0].startswith("#!ipxe"):
        raise BootConfigError("not an iPXE script (missing #!ipxe)")
    kernel: tuple[str, str] | None = None
    initrd: str | None = None
    booted = False
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        verb, _, rest = line.partition(" ")
        words = _drop_options(rest.split())
        if verb == "kernel":
            if not words:
                raise BootConfigError(f"'{verb}' without an image URL")
            kernel = (words[0], " ".join(words[1:]))
        elif verb in ("initrd", "module"):
            if not words:
                raise BootConfigError("'initrd' without an image URL")
            initrd = words[0]
        elif verb == "boot":
            booted = True
            break
    if kernel is None:
        raise BootConfigError("iPXE script has no kernel line")
    if not booted:
        raise BootConfigError("iPXE script never says 'boot'")
    return IpxeScript(kernel_url=kernel[0], kernel_args=kernel[1], initrd_url=initrd)


def _drop_options(words: list[str]) -> list[str]:
    """Remove iPXE image options (--name X, -n X, --autofree...) before the URL."""
    out: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-"):
        takes_value = words[i] in ("--name", "-n", "--timeout", "-t")
        i += 2 if takes_value and "=" not in words[i] else 1
    out.extend(words[i:])
    return out


_SIZE = re.compile(r"^(\d+)([KkMmGg]?)$")
DEFAULT_HUGEPAGE_KB = 2048


def _size_kb(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise BootConfigError(f"bad huge page size {text!r}")
    number, unit = int(match.group(1)), match.group(2).upper()
    factor = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[unit]
    return int(number * factor)


@dataclass
class KernelFacts:
    hugepages: dict[str, int] = field(default_factory=dict)
    iommu_mode: str = "off"
    transparent_hugepage: str | None = None
    nocloud_seed: str | None = None


def parse_cmdline(cmdline: str) -> KernelFacts:
    """Apply the contract's rules; a later parameter overrides an earlier one, as in Linux."""
    facts = KernelFacts()
    size_kb: int | None = None
    default_kb = DEFAULT_HUGEPAGE_KB
    iommu_pt = False
    vendor_iommu: str | None = None
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == "default_hugepagesz":
            default_kb = _size_kb(value)
        elif key == "hugepagesz":
            size_kb = _size_kb(value)
        elif key == "hugepages":
            if not value.isdigit():
                raise BootConfigError(f"bad hugepages count {value!r}")
            facts.hugepages[str(size_kb if size_kb is not None else default_kb)] = int(value)
            size_kb = None  # each hugepagesz= pairs with the next hugepages=
        elif key == "iommu":
            iommu_pt = value == "pt"
        elif key in ("intel_iommu", "amd_iommu"):
            flags = value.split(",")
            if "on" in flags:
                vendor_iommu = "on"
            elif "off" in flags:
                vendor_iommu = "off"
        elif key == "transparent_hugepage":
            facts.transparent_hugepage = value
        elif key == "ds":
            facts.nocloud_seed = _nocloud_seed(value)
    if iommu_pt:
        facts.iommu_mode = "passthrough"
    elif vendor_iommu == "on":
        facts.iommu_mode = "translated"
    else:
        facts.iommu_mode = "off"
    return facts


def _nocloud_seed(value: str) -> str | None:
    """'nocloud-net;s=URL' (or seedfrom=URL) -> URL."""
    source, *options = value.split(";")
    if source not in ("nocloud-net", "nocloud"):
        return None
    for option in options:
        name, _, url = option.partition("=")
        if name in ("s", "seedfrom") and url:
            return url
    return None
