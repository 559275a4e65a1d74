"""Per-node boot documents, as docs/boot-contract.md specifies them: the iPXE script and the
NoCloud user-data."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import yaml

from images.catalog import ImageDefinition
from images.cmdline import arg_key, merge_args
from images.mounts import StorageMount, cloud_init_mounts
from images.tuning import TuningProfile

# Arguments the renderer owns: the initrd name iPXE registers and the per-node NoCloud seed.
RESERVED_KEYS = frozenset({"initrd", "ds"})
TUNING_SCRIPT = "/usr/local/sbin/metalplane-tuning"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the tuning script) as YAML literal blocks, readable on the node."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _base(public_url: str) -> str:
    return public_url.rstrip("/")


def artifact_url(public_url: str, image: ImageDefinition, file: str) -> str:
    return f"{_base(public_url)}/boot/artifacts/{image.name}/{file}"


def seed_url(public_url: str, mac: str) -> str:
    return f"{_base(public_url)}/boot/{mac.lower()}/"


def kernel_args(
    image: ImageDefinition, profile: TuningProfile, extra: Sequence[str] = ()
) -> list[str]:
    """Image base arguments, then the profile's, then the operator's extras (which win)."""
    reserved = [a for a in extra if arg_key(a) in RESERVED_KEYS]
    if reserved:
        raise ValueError(f"kernel arguments {reserved} are set by the boot service")
    return merge_args(image.kernel_args, profile.kernel_args(image.cpu_vendor), extra)


def render_ipxe(
    image: ImageDefinition,
    profile: TuningProfile,
    *,
    public_url: str,
    mac: str,
    extra_kernel_args: Sequence[str] = (),
) -> str:
    return render_ipxe_with_args(
        image,
        public_url=public_url,
        mac=mac,
        args=kernel_args(image, profile, extra_kernel_args),
    )


def render_ipxe_with_args(
    image: ImageDefinition, *, public_url: str, mac: str, args: Sequence[str]
) -> str:
    """The iPXE script for kernel arguments already computed (a boot session freezes them)."""
    initrd = image.artifacts.initrd
    line_args = [
        f"initrd={initrd}",  # Linux finds the initrd by the name iPXE registered it under
        *args,
        f"ds=nocloud-net;s={seed_url(public_url, mac)}",
    ]
    lines = [
        "#!ipxe",
        f"kernel {artifact_url(public_url, image, image.artifacts.kernel)} {' '.join(line_args)}",
        f"initrd --name {initrd} {artifact_url(public_url, image, initrd)}",
        "boot",
    ]
    return "\n".join(lines) + "\n"


def _tuning_script(profile: TuningProfile) -> str:
    os_ = profile.os
    pages = os_.hugepages
    governor = shlex.quote(os_.cpu_governor)
    thp = shlex.quote(os_.transparent_hugepage)
    nr = f"/sys/kernel/mm/hugepages/hugepages-{pages.size_kb}kB/nr_hugepages"
    return f"""#!/bin/sh
# Written by metalplane user-data: applies the OS part of tuning profile {profile.name}.
set -u
for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -w "$g" ] && echo {governor} > "$g"
done
echo {thp} > /sys/kernel/mm/transparent_hugepage/enabled
got=$(cat {nr} 2>/dev/null || echo 0)
if [ "$got" -lt {pages.count} ]; then
    echo "metalplane: huge pages {pages.size}: expected {pages.count}, got $got" >&2
    exit 1
fi
"""


def render_user_data(
    image: ImageDefinition,
    profile: TuningProfile,
    *,
    public_url: str,
    node_id: str,
    boot_session_id: str,
    token: str,
    cluster: dict[str, Any] | None = None,
    mounts: Sequence[StorageMount] = (),
    ssh_keys: Sequence[str] = (),
    task: dict[str, Any] | None = None,
) -> str:
    """`cluster`: the node's part in its cluster (images.cluster_section.ClusterSection), if any;
    `mounts`: its cluster's storage, mounted by cloud-init's `mounts` module; `ssh_keys`: the
    OpenSSH public keys of the node's tenant, as cloud-init's `ssh_authorized_keys` (type and
    key only: a comment could need YAML quoting, which the lab image's agent does not parse);
    `task`: what the agent boots to do instead of running the image (`{"kind": "clean"}`:
    wipe every disk and report, docs/cleaning.md)."""
    os_ = profile.os
    doc: dict[str, Any] = {
        "metalplane": {
            "node_id": node_id,
            "boot_session": boot_session_id,
            "image": image.name,
            "phone_home": {"url": f"{_base(public_url)}/boot/phone-home", "token": token},
            "tuning": {
                "profile": profile.name,
                "cpu_governor": os_.cpu_governor,
                "transparent_hugepage": os_.transparent_hugepage,
                "hugepages": {str(os_.hugepages.size_kb): os_.hugepages.count},
            },
        },
        "write_files": [
            {
                "path": TUNING_SCRIPT,
                "permissions": "0755",
                "owner": "root:root",
                "content": _tuning_script(profile),
            },
        ],
        "runcmd": [[TUNING_SCRIPT]],
    }
    if task is not None:
        doc["metalplane"]["task"] = task
    if cluster is not None:
        doc["metalplane"]["cluster"] = cluster
    if mounts:
        doc["mounts"] = cloud_init_mounts(mounts)
    if ssh_keys:
        doc["ssh_authorized_keys"] = [" ".join(key.split()[:2]) for key in ssh_keys]
    # One line per scalar (no folding at 80 columns): the lab agent reads scalars by line.
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return "#cloud-config\n" + body
