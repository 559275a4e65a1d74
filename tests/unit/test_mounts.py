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
            ["mgs@tcp:/lfs", "/lfs/", "lustre", "defaults", "0", "0"],
        ]
    )


def test_every_asked_mount_must_be_reported_with_its_source_and_type() -> None:
    reported = [
        MountFact(source="10.0.0.5:/export/scratch", target="/scratch", fstype="nfs"),
        MountFact(source="mgs@tcp:/lfs", target="/lfs", fstype="lustre"),
    ]
    assert check([SCRATCH, LUSTRE], reported) == []
    (missing,) = check([SCRATCH, LUSTRE], reported[:1])
    assert "mgs@tcp:/lfs (lustre) is not mounted at /lfs/ (found: nothing)" in missing.message
    wrong = [MountFact(source="10.0.0.6:/other", target="/scratch", fstype="nfs")]
    (other,) = check([SCRATCH], wrong)
    assert other.actual == "10.0.0.6:/other (nfs)"
    assert check([], reported) == []


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
    body = {"name": "c", "kind": "slurm", "node_count": 1, "gpu_model": "g", "image": "lab-sim"}
    mount = {**SCRATCH.model_dump(), **bad}
    with pytest.raises(ValidationError):
        ClusterCreate.model_validate({**body, "storage_mounts": [mount]})


def test_two_mounts_on_one_point_are_refused() -> None:
    body = {"name": "c", "kind": "slurm", "node_count": 1, "gpu_model": "g", "image": "lab-sim"}
    twice = [SCRATCH.model_dump(), {**LUSTRE.model_dump(), "mount_point": "/scratch/"}]
    with pytest.raises(ValidationError, match="share a mount point"):
        ClusterCreate.model_validate({**body, "storage_mounts": twice})
    assert not reserved("/scratch") and reserved("/proc/x") and reserved("/")
