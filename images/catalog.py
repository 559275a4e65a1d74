"""The catalog of golden images: images/catalog/<name>.yaml, validated once and cached."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from images.errors import UnknownImage
from images.tuning import CpuVendor, TuningProfile, get_profile

CATALOG_DIR = Path(__file__).parent / "catalog"


class OsInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    version: str


class BootArtifacts(BaseModel):
    """File names relative to the image's store directory `<store>/<image name>/`. An image
    with a `disk_image` is deployed to the node's disk by the agent (docs/deploy.md): its
    kernel and initrd are then paths inside that filesystem image, loaded by the bootloader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernel: str
    initrd: str
    disk_image: str | None = Field(
        default=None, description="a filesystem image the agent writes to the disk's partition"
    )
    generated: bool = Field(
        default=False, description="Written by store.materialize_lab_artifacts, not an operator"
    )

    @field_validator("kernel", "initrd", "disk_image")
    @classmethod
    def _plain_file_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # They end up in URLs and store paths: no directories, no traversal.
        if not value or "/" in value or "\\" in value or value in {".", ".."}:
            raise ValueError(f"artifact must be a plain file name, got {value!r}")
        return value

    @property
    def files(self) -> tuple[str, ...]:
        """What the store holds: the disk image, or the kernel and initrd network booted."""
        return (self.disk_image,) if self.disk_image else (self.kernel, self.initrd)


class ImageDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    os: OsInfo
    artifacts: BootArtifacts
    kernel_args: tuple[str, ...] = Field(default=(), description="Base arguments (console...)")
    tuning_profile: str
    cpu_vendor: CpuVendor = "any"
    reports_digests: bool = Field(
        default=True,
        description="its agent reports the SHA-256 of the kernel and initrd it booted; an "
        "image whose agent cannot measure them (nothing hands the booted files to the OS) "
        "says false, and verification does not expect digests",
    )
    gpu_device_prefix: str = Field(
        default="/dev/nvidia", description="GPU device files are <prefix>0, <prefix>1, ..."
    )
    stateless: bool = Field(
        default=False,
        description="the node runs from its network boot, every boot (nothing is installed on a "
        "disk): it keeps network boot and its boot session while active, and each reboot phones "
        "home and is verified again; false: the node boots from its disk once verified",
    )

    @property
    def profile(self) -> TuningProfile:
        return get_profile(self.tuning_profile)


@cache
def load_catalog() -> dict[str, ImageDefinition]:
    images: dict[str, ImageDefinition] = {}
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        image = ImageDefinition.model_validate(yaml.safe_load(path.read_text()))
        if image.name != path.stem:
            raise ValueError(f"{path}: image name {image.name!r} differs from the file name")
        get_profile(image.tuning_profile)  # a dangling profile name fails at load, not at boot
        images[image.name] = image
    return images


def get_image(name: str) -> ImageDefinition:
    catalog = load_catalog()
    try:
        return catalog[name]
    except KeyError:
        raise UnknownImage(name, list(catalog)) from None
