"""Catalog, profiles, rendering and store of the images package."""

from __future__ import annotations

import hashlib
import os
import shlex

import pytest
import yaml

from images import (
    ImageStore,
    UnknownArtifact,
    UnknownImage,
    get_image,
    kernel_args,
    load_catalog,
    materialize_lab_artifacts,
    render_ipxe,
    render_user_data,
)
from images.cmdline import merge_args, parse_cmdline

URL = "http://127.0.0.1:8000"
MAC = "52:54:00:12:34:56"


def parse_ipxe(script: str) -> dict[str, object]:
    lines = script.strip().splitlines()
    assert lines[0] == "#!ipxe" and lines[-1] == "boot"
    kernel = next(line for line in lines if line.startswith("kernel "))
    initrd = next(line for line in lines if line.startswith("initrd "))
    _, kernel_url, *args = kernel.split()
    tokens = shlex.split(initrd)
    name = tokens[tokens.index("--name") + 1]
    return {"kernel_url": kernel_url, "args": args, "initrd_name": name, "initrd_url": tokens[-1]}


def test_catalog_has_the_three_images_sharing_the_gpu_profile() -> None:
    catalog = load_catalog()
    assert {"ubuntu-22.04-gpu", "rocky-9-gpu", "lab-sim"} <= set(catalog)
    assert load_catalog() is catalog  # cached
    assert {img.tuning_profile for img in catalog.values()} == {"gpu-performance"}
    assert catalog["lab-sim"].artifacts.generated
    assert not catalog["ubuntu-22.04-gpu"].artifacts.generated


def test_unknown_image_is_a_clear_error() -> None:
    with pytest.raises(UnknownImage, match=r"no-such-image.*lab-sim"):
        get_image("no-such-image")


def test_profile_kernel_args_by_cpu_vendor() -> None:
    profile = get_image("lab-sim").profile
    intel = profile.kernel_args("intel")
    assert intel == [
        "iommu=pt",
        "intel_iommu=on",
        "hugepagesz=1G",
        "hugepages=16",
        "default_hugepagesz=1G",
        "transparent_hugepage=always",
        "processor.max_cstate=1",
        "intel_idle.max_cstate=0",
    ]
    assert "amd_iommu=on" in profile.kernel_args("amd")
    assert "intel_iommu=on" not in profile.kernel_args("amd")
    both = kernel_args(get_image("rocky-9-gpu"), profile)
    assert {"intel_iommu=on", "amd_iommu=on"} <= set(both)


def test_ipxe_round_trip_follows_the_boot_contract() -> None:
    image = get_image("lab-sim")
    parsed = parse_ipxe(render_ipxe(image, image.profile, public_url=URL + "/", mac=MAC))
    assert parsed["kernel_url"] == f"{URL}/boot/artifacts/lab-sim/vmlinuz"
    assert parsed["initrd_url"] == f"{URL}/boot/artifacts/lab-sim/initrd.img"
    args = parsed["args"]
    assert isinstance(args, list)
    assert args[0] == f"initrd={parsed['initrd_name']}"
    assert args[-1] == f"ds=nocloud-net;s={URL}/boot/{MAC}/"
    booted = parse_cmdline(" ".join(args))
    assert booted["iommu"] == "pt" and booted["intel_iommu"] == "on"
    assert booted["hugepagesz"] == "1G" and booted["hugepages"] == "16"
    assert booted["transparent_hugepage"] == "always"
    assert booted["console"] == "ttyS0,115200n8"


def test_operator_override_replaces_in_place_and_keeps_repeated_base_args() -> None:
    image = get_image("ubuntu-22.04-gpu")
    args = kernel_args(image, image.profile, ["hugepages=32", "iommu=off", "nomodeset"])
    assert args.count("console=tty0") == 1 and args.count("console=ttyS0,115200n8") == 1
    assert "hugepages=16" not in args and "iommu=pt" not in args
    assert args.index("hugepagesz=1G") < args.index("hugepages=32")
    assert args[-1] == "nomodeset"
    script = render_ipxe(
        image, image.profile, public_url=URL, mac=MAC, extra_kernel_args=["hugepages=32"]
    )
    assert parse_cmdline(" ".join(parse_ipxe(script)["args"]))["hugepages"] == "32"  # type: ignore[arg-type]


def test_later_group_overrides_every_earlier_occurrence() -> None:
    assert merge_args(["console=tty0", "console=ttyS0", "quiet"], ["console=ttyS1"]) == [
        "console=ttyS1",
        "quiet",
    ]


def test_reserved_kernel_args_cannot_be_overridden() -> None:
    image = get_image("lab-sim")
    with pytest.raises(ValueError, match="boot service"):
        kernel_args(image, image.profile, ["ds=nocloud;s=http://evil/"])


def test_user_data_round_trip() -> None:
    image = get_image("lab-sim")
    text = render_user_data(
        image,
        image.profile,
        public_url=URL,
        node_id="gpu-001",
        boot_session_id="6f1c",
        token="secret",
    )
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    mp = doc["metalplane"]
    assert mp["node_id"] == "gpu-001" and mp["boot_session"] == "6f1c"
    assert mp["image"] == "lab-sim"
    assert mp["phone_home"] == {"url": f"{URL}/boot/phone-home", "token": "secret"}
    assert mp["tuning"]["cpu_governor"] == "performance"
    assert mp["tuning"]["transparent_hugepage"] == "always"
    script = doc["write_files"][0]
    assert script["permissions"] == "0755"
    assert doc["runcmd"] == [[script["path"]]]
    body = script["content"]
    assert body.startswith("#!/bin/sh\n")
    assert "echo performance >" in body
    assert "echo always > /sys/kernel/mm/transparent_hugepage/enabled" in body
    assert "hugepages-1048576kB/nr_hugepages" in body and "-lt 16" in body


def test_store_readiness_and_digests(tmp_path) -> None:
    image = get_image("ubuntu-22.04-gpu")
    store = ImageStore(tmp_path)
    assert not store.is_ready(image)
    assert store.missing(image) == ["vmlinuz", "initrd.img"]
    (tmp_path / image.name).mkdir()
    kernel = store.artifact_path(image, "vmlinuz")
    kernel.write_bytes(b"kernel-one")
    assert not store.is_ready(image)
    store.artifact_path(image, "initrd.img").write_bytes(b"initrd")
    assert store.is_ready(image)
    assert store.sha256(image, "vmlinuz") == hashlib.sha256(b"kernel-one").hexdigest()
    # The cache follows mtime/size: a replaced file is hashed again.
    kernel.write_bytes(b"kernel-two!")
    os.utime(kernel, ns=(1, 1))
    assert store.sha256(image, "vmlinuz") == hashlib.sha256(b"kernel-two!").hexdigest()
    with pytest.raises(UnknownArtifact):
        store.artifact_path(image, "../etc/passwd")


def test_lab_artifacts_are_deterministic_and_say_what_they_are(tmp_path) -> None:
    image = get_image("lab-sim")
    paths = [p for p in materialize_lab_artifacts(tmp_path) if p.parent.name == "lab-sim"]
    store = ImageStore(tmp_path)
    assert store.is_ready(image)
    first = {p.name: p.read_bytes() for p in paths}
    mtimes = {p.name: p.stat().st_mtime_ns for p in paths}
    assert b"NOT a Linux kernel" in first["vmlinuz"]
    assert b"Nothing executes it" in first["initrd.img"]
    other = tmp_path / "again"
    again = {
        p.name: p.read_bytes()
        for p in materialize_lab_artifacts(other)
        if p.parent == other / "lab-sim"
    }
    assert again == first
    materialize_lab_artifacts(tmp_path)  # unchanged content is not rewritten
    assert {p.name: p.stat().st_mtime_ns for p in paths} == mtimes


def test_the_built_qemu_image_is_placed_in_every_store(tmp_path) -> None:
    """`make lab-image` (a prerequisite of `make test`) built it from Debian packages."""
    materialize_lab_artifacts(tmp_path)
    store = ImageStore(tmp_path)
    image = get_image("lab-qemu")
    assert store.is_ready(image), "run `make lab-image`"
    with store.artifact_path(image, "vmlinuz").open("rb") as kernel:
        assert kernel.read(0x210)[0x202:0x206] == b"HdrS"  # a real Linux bzImage header


def test_user_data_carries_the_tenants_keys_one_per_plain_line() -> None:
    image = get_image("lab-qemu")
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBu alice: 'laptop' #1", "ssh-rsa AAAAB3Nza bob"]
    text = render_user_data(
        image, image.profile, public_url=URL, node_id="n", boot_session_id="s", token="t",
        ssh_keys=keys,
    )  # fmt: skip
    assert yaml.safe_load(text)["ssh_authorized_keys"] == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBu", "ssh-rsa AAAAB3Nza",
    ]  # fmt: skip
    # As the lab image's agent reads them: `- ` lines after the key, unquoted.
    listed = text.split("ssh_authorized_keys:\n", 1)[1].splitlines()
    assert listed == ["- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBu", "- ssh-rsa AAAAB3Nza"]
    no_keys = render_user_data(
        image, image.profile, public_url=URL, node_id="n", boot_session_id="s", token="t"
    )
    assert "ssh_authorized_keys" not in yaml.safe_load(no_keys)
