"""SKUs: the hardware classes nodes are enrolled under, and the check of a node's inspected
hardware against its SKU (docs/commissioning.md). The catalog is YAML, `inventory/skus.yaml`
unless the `sku_catalog` setting names the operator's own file."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.facts import HardwareRecord

CATALOG = Path(__file__).with_name("skus.yaml")
GIB = 2**30


CleanStep = Literal["erase_disks", "inspect", "burn_in"]
# What a clean's agent does, in order, unless the node's SKU says otherwise: wipe every disk,
# inspect the hardware (checked against the SKU, firmware included), then the burn-in.
DEFAULT_CLEAN_STEPS: tuple[CleanStep, ...] = ("erase_disks", "inspect", "burn_in")
INSPECT_STEPS: tuple[CleanStep, ...] = ("inspect", "burn_in")


def _wipes(steps: list[CleanStep]) -> list[CleanStep]:
    if "erase_disks" not in steps:
        raise ValueError("a clean wipes the disks: clean_steps must include erase_disks")
    if len(set(steps)) != len(steps):
        raise ValueError("clean_steps lists a step twice")
    return steps


class SkuGpus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    count: int = Field(ge=1)


class SkuDisks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)
    min_gib: float = Field(default=0, ge=0, description="each at least this big")


class Sku(BaseModel):
    """What every node of the class must have. `vendor` and `model` (the DMI system
    identity) also pick the SKU of a node enrolled without one."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    vendor: str | None = None
    model: str | None = None
    gpus: SkuGpus | None = None
    memory_gib_min: float = Field(ge=0, description="MemTotal: below what is installed")
    cpus_min: int = Field(default=1, ge=1)
    disks: SkuDisks = Field(default_factory=lambda: SkuDisks(count=0))
    nics_min: int = Field(default=1, ge=0)
    bios_version: str | None = Field(default=None, description="the desired BIOS firmware")
    bmc_firmware_version: str | None = Field(default=None, description="the desired BMC firmware")
    clean_steps: Annotated[list[CleanStep], AfterValidator(_wipes)] = Field(
        default_factory=lambda: list(DEFAULT_CLEAN_STEPS),
        description="what a clean's agent does, in this order (as Ironic's clean steps)",
    )


class UnknownSku(LookupError):
    pass


@cache
def catalog(path: Path = CATALOG) -> dict[str, Sku]:
    entries = yaml.safe_load(path.read_text()) or []
    skus = [Sku.model_validate(entry) for entry in entries]
    return {sku.name: sku for sku in skus}


def get(name: str, path: Path = CATALOG) -> Sku:
    try:
        return catalog(path)[name]
    except KeyError:
        raise UnknownSku(f"no SKU {name!r} in {path}") from None


def differences(sku: Sku, found: HardwareRecord) -> list[str]:
    """What the node lacks or has otherwise than its SKU, each in words an operator acts on."""
    out = []
    if found.memory_bytes < sku.memory_gib_min * GIB:
        out.append(
            f"memory: SKU {sku.name} needs {sku.memory_gib_min:g} GiB, found"
            f" {found.memory_bytes / GIB:.1f} GiB"
        )
    if found.cpus < sku.cpus_min:
        out.append(f"CPUs: SKU {sku.name} needs {sku.cpus_min}, found {found.cpus}")
    expected_gpus = sku.gpus.count if sku.gpus else 0
    if len(found.gpus) != expected_gpus:
        out.append(f"GPUs: SKU {sku.name} has {expected_gpus}, found {len(found.gpus)}")
    if sku.gpus is not None:
        others = sorted({g.model for g in found.gpus if g.model != sku.gpus.model})
        if others:
            out.append(f"GPU model: SKU {sku.name} has {sku.gpus.model}, found {', '.join(others)}")
    big_enough = [d for d in found.disks if d.size_bytes >= sku.disks.min_gib * GIB]
    if len(big_enough) < sku.disks.count:
        out.append(
            f"disks: SKU {sku.name} has {sku.disks.count} of at least {sku.disks.min_gib:g} GiB,"
            f" found {len(big_enough)}"
        )
    if len(found.nics) < sku.nics_min:
        out.append(f"NICs: SKU {sku.name} has {sku.nics_min}, found {len(found.nics)}")
    if sku.bios_version is not None and found.bios_version != sku.bios_version:
        out.append(
            f"BIOS firmware: SKU {sku.name} wants {sku.bios_version}, found {found.bios_version}"
        )
    wanted_bmc = sku.bmc_firmware_version
    if wanted_bmc is not None and found.bmc_firmware_version != wanted_bmc:
        out.append(
            f"BMC firmware: SKU {sku.name} wants {wanted_bmc}, found {found.bmc_firmware_version}"
        )
    return out


def clean_steps(name: str | None, path: Path = CATALOG) -> list[CleanStep]:
    """The clean steps of SKU `name` (a node without one, or of a SKU gone: the default)."""
    try:
        return get(name, path).clean_steps if name else list(DEFAULT_CLEAN_STEPS)
    except UnknownSku:
        return list(DEFAULT_CLEAN_STEPS)


def match(vendor: str, model: str, gpu_model: str | None, path: Path = CATALOG) -> Sku | None:
    """The SKU of a node enrolled without one: the first whose identity fits."""
    for sku in catalog(path).values():
        if sku.vendor not in (None, vendor) or sku.model not in (None, model):
            continue
        if (sku.gpus.model if sku.gpus else None) == gpu_model:
            return sku
    return None
