"""Parallel-filesystem mounts a cluster asks for: how cloud-init mounts them on the node, and
the check of what the node reports mounted against what was asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.facts import MountFact
from images.verify import Mismatch

FsType = Literal["nfs", "nfs4", "lustre", "beegfs", "gpfs"]


class StorageMount(BaseModel):
    """One mount: `server:path` (Lustre: `mgs@tcp:/fsname`) at `mount_point`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:@_-]{0,254}$")
    path: str = Field(pattern=r"^/[A-Za-z0-9._/-]{0,1023}$")
    mount_point: str = Field(pattern=r"^/[A-Za-z0-9._/-]{1,1023}$")
    fstype: FsType = "nfs"
    options: str = Field(default="defaults", pattern=r"^[A-Za-z0-9=,._:-]{1,256}$")

    @field_validator("mount_point")
    @classmethod
    def _normalized(cls, mount_point: str) -> str:
        # Stored, rendered and compared as the directory the kernel will mount on, so that
        # `/var/../etc` or `//etc` cannot slip past `reserved` and `/data/` is `/data`.
        return normalize_point(mount_point)

    @property
    def source(self) -> str:
        return f"{self.server}:{self.path}"


def normalize_point(mount_point: str) -> str:
    """The absolute path with `//` and `/./` collapsed and `..` resolved (lexically: the node's
    symlinks are unknown here). ValueError for a relative path or one that climbs above `/`
    (the kernel would stop at `/`, but such a point is a mistake or an attempt)."""
    if not mount_point.startswith("/"):
        raise ValueError(f"mount point {mount_point!r} is not an absolute path")
    parts: list[str] = []
    for part in mount_point.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(f"mount point {mount_point!r} climbs above /")
            parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


# The operating system's own directories: a mount on or under one shadows what the node needs
# to run (or its state). /home, /opt, /srv, /mnt, /media and anything new stay the tenant's.
RESERVED = (
    "/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/usr", "/bin", "/sbin",
    "/lib", "/lib32", "/lib64", "/libx32", "/var", "/root", "/tmp",
)  # fmt: skip


def reserved(mount_point: str) -> bool:
    """A mount point that would shadow the OS: `/`, or one of RESERVED or under it, after
    normalization; a point that does not normalize is refused too."""
    try:
        point = normalize_point(mount_point)
    except ValueError:
        return True
    return point == "/" or any(point == r or point.startswith(r + "/") for r in RESERVED)


def cloud_init_mounts(mounts: Sequence[StorageMount]) -> list[list[str]]:
    """cloud-init's `mounts` module entries (fstab fields): it writes fstab and mounts them."""
    return [[m.source, m.mount_point, m.fstype, m.options, "0", "0"] for m in mounts]


def check(expected: Sequence[StorageMount], reported: Sequence[MountFact]) -> list[Mismatch]:
    """Each asked mount must be reported at its mount point with its source and type."""
    found = {(f.target.rstrip("/") or "/"): f for f in reported}
    mismatches = []
    for mount in expected:
        fact = found.get(mount.mount_point.rstrip("/") or "/")
        actual = None if fact is None else f"{fact.source} ({fact.fstype})"
        if fact is None or fact.source != mount.source or fact.fstype != mount.fstype:
            mismatches.append(
                Mismatch(
                    field=f"mounts[{mount.mount_point}]",
                    expected=f"{mount.source} ({mount.fstype})",
                    actual=actual,
                    message=f"storage mount {mount.source} ({mount.fstype}) is not mounted at "
                    f"{mount.mount_point} (found: {actual or 'nothing'})",
                )
            )
    return mismatches
