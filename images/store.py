"""The image store: `<root>/<image name>/<artifact>` files served to booting nodes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from images.catalog import ImageDefinition, get_image
from images.errors import UnknownArtifact

LAB_IMAGE = "lab-sim"
QEMU_IMAGE = "lab-qemu"
QEMU_IMAGES = (QEMU_IMAGE, "lab-qemu-disk")  # network booted, and deployed to the disk
# Where `make lab-image` builds the lab QEMU image (kernel and initrd from Debian packages).
QEMU_BUILD = Path(__file__).parent / "lab_qemu" / "build"
_CHUNK = 1 << 20


class ImageStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        # path -> (mtime_ns, size, digest): hashing a multi-GB initrd per boot is wasteful.
        self._digests: dict[Path, tuple[int, int, str]] = {}

    def image_dir(self, image: ImageDefinition) -> Path:
        return self.root / image.name

    def artifact_path(self, image: ImageDefinition, file: str) -> Path:
        if file not in image.artifacts.files:
            raise UnknownArtifact(
                f"{file!r} is not a boot artifact of image {image.name!r} "
                f"(artifacts: {', '.join(image.artifacts.files)})"
            )
        return self.image_dir(image) / file

    def is_ready(self, image: ImageDefinition) -> bool:
        return all(self.artifact_path(image, f).is_file() for f in image.artifacts.files)

    def missing(self, image: ImageDefinition) -> list[str]:
        return [f for f in image.artifacts.files if not self.artifact_path(image, f).is_file()]

    def sha256(self, image: ImageDefinition, file: str) -> str:
        path = self.artifact_path(image, file)
        stat = path.stat()  # FileNotFoundError when the operator has not placed it
        cached = self._digests.get(path)
        if cached and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        self._digests[path] = (stat.st_mtime_ns, stat.st_size, digest.hexdigest())
        return digest.hexdigest()


def _lab_content(image: ImageDefinition, role: str, filler_lines: int) -> bytes:
    header = (
        f"metalplane {image.name} {role} artifact\n"
        f"This is NOT a Linux {role}: it is a generated placeholder for simulated lab nodes,\n"
        "which download it and report its SHA-256. Nothing executes it.\n"
    )
    # Deterministic filler so the transfer is not trivially small; same bytes every run.
    filler = "".join(f"{role} filler line {i:05d}\n" for i in range(filler_lines))
    return (header + filler).encode()


def materialize_lab_artifacts(root: Path | str) -> list[Path]:
    """Write the lab-sim artifacts under root, and the lab-qemu ones when `make lab-image` has
    built them; unchanged files are left alone (stable mtime)."""
    image = get_image(LAB_IMAGE)
    store = ImageStore(root)
    contents = {
        image.artifacts.kernel: _lab_content(image, "kernel", 2048),
        image.artifacts.initrd: _lab_content(image, "initrd", 8192),
    }
    written: list[Path] = []
    for file, data in contents.items():
        path = store.artifact_path(image, file)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and path.read_bytes() == data):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a node never fetches a half-written file
        written.append(path)
    written += _place_qemu_image(store)
    return written


def _place_qemu_image(store: ImageStore) -> list[Path]:
    placed: list[Path] = []
    for name in QEMU_IMAGES:
        image = get_image(name)
        for file in image.artifacts.files:
            built, path = QEMU_BUILD / file, store.artifact_path(image, file)
            if not built.is_file():
                break  # not built: the image stays not ready
            path.parent.mkdir(parents=True, exist_ok=True)
            stat = built.stat()
            if not (path.is_file() and path.stat().st_size == stat.st_size
                    and path.stat().st_mtime_ns == stat.st_mtime_ns):  # fmt: skip
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(built.read_bytes())
                os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                os.replace(tmp, path)
            placed.append(path)
    return placed
