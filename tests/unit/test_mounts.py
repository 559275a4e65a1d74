"""Storage mounts: validation, what cloud-init gets, and the check of the node's facts."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

import images
from api.cluster_schemas import ClusterCreate
from core.facts import MountFact
from images.mounts import StorageMount, check, cloud_init_mounts, reserved

SCRATCH = StorageMount(
    server="10.0.0.5", path="/export/scratch", mount_point="/scratch", options="vers=4.2,hard"
)
LUSTRE = StorageMount(server="mgs@tcp", path="/lfs", mount_point="/lfs/", fstype="lustre")


def test_cloud_init_mounts_them_as_fstab_entries() -> None:
    image = images.get_image("lab-sim")
    text = images.render_user_data(
        image, image.profile, public_url="http://x", node_id="n1", boot_session_id="s",
        token="t", mounts=[SCRATCH, LUSTRE],
    )  # fmt: skip
    assert (
        yaml.safe_load(text)["mounts"]
        == cloud_init_mounts([SCRATCH, LUSTRE])
        == [
            ["10.0.0.5:/export/scratch", "/scratch", "nfs", "vers=4.2,hard", "0", "0"],
            ["mgs@tcp:/lfs", "/lfs", "lustre", "defaults", "0", "0"],
        ]
    )


def test_every_asked_mount_must_be_reported_with_its_source_and_type() -> None:
    reported = [
        MountFact(source="10.0.0.5:/export/scratch", target="/scratch", fstype="nfs"),
        MountFact(source="mgs@tcp:/lfs", target="/lfs", fstype="lustre"),
    ]
    assert check([SCRATCH, LUSTRE], reported) == []
    (missing,) = check([SCRATCH, LUSTRE], reported[:1])
    assert "mgs@tcp:/lfs (lustre) is not mounted at /lfs (found: nothing)" in missing.message
    wrong = [MountFact(source="10.0.0.6:/other", target="/scratch", fstype="nfs")]
    (other,) = check([SCRATCH], wrong)
    assert other.actual == "10.0.0.6:/other (nfs)"
    assert check([], reported) == []


BODY = {"name": "c", "kind": "slurm", "node_count": 1, "gpu_model": "g", "image": "lab-sim"}


@pytest.mark.parametrize(
    "bad",
    [
        {"mount_point": "relative"},
        {"mount_point": "/etc"},
        {"mount_point": "/run/x"},
        {"mount_point": "/"},
        {"server": "a b"},
        {"options": "rw;reboot"},
        {"fstype": "ext4"},
        {"path": "/x\n"},
    ],
)
def test_bad_mounts_are_refused(bad: dict[str, str]) -> None:
    mount = {**SCRATCH.model_dump(), **bad}
    with pytest.raises(ValidationError):
        ClusterCreate.model_validate({**BODY, "storage_mounts": [mount]})


@pytest.mark.parametrize(
    "point",
    [
        # Spellings of a reserved directory that a prefix check on the raw string misses.
        "/./etc", "//etc", "/var/../etc", "/etc/", "/etc/.", "/data/../etc", "/./",
        "//", "/.", "/home/..", "/usr//lib", "/boot/./efi",
        # The OS's directories the first list lacked.
        "/var", "/var/lib/data", "/root", "/root/.ssh", "/lib64", "/lib32", "/libx32",
        "/tmp", "/tmp/scratch", "/sbin", "/lib/modules", "/proc/x", "/sys/fs", "/dev/shm",
    ],
)  # fmt: skip
def test_points_on_or_under_the_os_are_refused_however_spelled(point: str) -> None:
    mount = {**SCRATCH.model_dump(), "mount_point": point}
    with pytest.raises(ValidationError, match="would shadow the operating system"):
        ClusterCreate.model_validate({**BODY, "storage_mounts": [mount]})
    assert reserved(point)


@pytest.mark.parametrize("point", ["/..", "/../etc", "/../data", "/data/../../x", "/a/../.."])
def test_points_climbing_above_the_root_are_refused(point: str) -> None:
    with pytest.raises(ValidationError, match="climbs above /"):
        StorageMount(server="10.0.0.5", path="/x", mount_point=point)
    assert reserved(point)


@pytest.mark.parametrize(
    ("point", "normalized"),
    [
        ("/scratch", "/scratch"),
        ("/scratch/", "/scratch"),
        ("//scratch", "/scratch"),
        ("/./scratch/.", "/scratch"),
        ("/data//fast/", "/data/fast"),
        ("/data/x/../fast", "/data/fast"),
        ("/home", "/home"),
        ("/home/shared", "/home/shared"),
        ("/opt/apps", "/opt/apps"),
        ("/srv/nfs", "/srv/nfs"),
        ("/mnt/lustre", "/mnt/lustre"),
        ("/etcetera", "/etcetera"),  # a name starting like a reserved one is not under it
        ("/variable", "/variable"),
        ("/var/../data", "/data"),
        ("/.hidden", "/.hidden"),
        ("/x..y", "/x..y"),
    ],
)
def test_normal_points_are_accepted_and_stored_normalized(point: str, normalized: str) -> None:
    mount = {**SCRATCH.model_dump(), "mount_point": point}
    cluster = ClusterCreate.model_validate({**BODY, "storage_mounts": [mount]})
    (stored,) = cluster.storage_mounts
    assert stored.mount_point == normalized
    assert not reserved(point)
    # What cloud-init writes into fstab is the normalized point too.
    assert cloud_init_mounts([stored])[0][1] == normalized


@pytest.mark.parametrize("second", ["/scratch/", "//scratch", "/./scratch", "/x/../scratch"])
def test_two_mounts_on_one_point_are_refused(second: str) -> None:
    twice = [SCRATCH.model_dump(), {**LUSTRE.model_dump(), "mount_point": second}]
    with pytest.raises(ValidationError, match="share a mount point"):
        ClusterCreate.model_validate({**BODY, "storage_mounts": twice})
    assert not reserved("/scratch") and reserved("/proc/x") and reserved("/")


def test_distinct_points_are_accepted() -> None:
    both = [SCRATCH.model_dump(), {**LUSTRE.model_dump(), "mount_point": "/scratch2"}]
    cluster = ClusterCreate.model_validate({**BODY, "storage_mounts": both})
    assert [m.mount_point for m in cluster.storage_mounts] == ["/scratch", "/scratch2"]
