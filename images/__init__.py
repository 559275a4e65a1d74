"""Golden OS images for GPU servers: catalog, tuning profiles, vendor BIOS maps, per-node boot
documents and the verifier of what a booted node reports."""

from images.bios_vendors import (
    BiosSetting,
    ExpectedAttribute,
    Vendor,
    bios_attributes_for,
    expected_bios_attributes,
    setting_for_attribute,
    unmapped_settings,
    vendor_of,
)
from images.catalog import BootArtifacts, ImageDefinition, OsInfo, get_image, load_catalog
from images.errors import (
    BiosAttributeNotFound,
    BiosNamesRequired,
    ImagesError,
    UnknownArtifact,
    UnknownImage,
    UnknownProfile,
    UnknownVendor,
    UnsupportedBiosValue,
)
from images.render import (
    artifact_url,
    kernel_args,
    render_ipxe,
    render_ipxe_with_args,
    render_user_data,
    seed_url,
)
from images.store import ImageStore, materialize_lab_artifacts
from images.tuning import BiosTuning, HugePages, OsTuning, TuningProfile, get_profile, load_profiles
from images.verify import Mismatch, verify

__all__ = [
    "BiosAttributeNotFound",
    "BiosNamesRequired",
    "BiosSetting",
    "BiosTuning",
    "BootArtifacts",
    "ExpectedAttribute",
    "HugePages",
    "ImageDefinition",
    "ImageStore",
    "ImagesError",
    "Mismatch",
    "OsInfo",
    "OsTuning",
    "TuningProfile",
    "UnknownArtifact",
    "UnknownImage",
    "UnknownProfile",
    "UnknownVendor",
    "UnsupportedBiosValue",
    "Vendor",
    "artifact_url",
    "bios_attributes_for",
    "expected_bios_attributes",
    "get_image",
    "get_profile",
    "kernel_args",
    "load_catalog",
    "load_profiles",
    "materialize_lab_artifacts",
    "render_ipxe",
    "render_ipxe_with_args",
    "render_user_data",
    "seed_url",
    "setting_for_attribute",
    "unmapped_settings",
    "vendor_of",
    "verify",
]
