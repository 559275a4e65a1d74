"""A golden image a request names: known (422 otherwise) and with its boot artifacts in the
image store (422 otherwise)."""

from __future__ import annotations

from fastapi import Request

import images

from .problems import Problem


def ready_image(request: Request, name: str) -> images.ImageDefinition:
    try:
        image = images.get_image(name)
    except images.UnknownImage as exc:
        raise Problem(422, "unknown-image", "Unknown image", str(exc)) from exc
    if not request.app.state.image_store.is_ready(image):
        raise Problem(
            422, "image-not-ready", "Image not ready",
            f"image {image.name!r} has no boot artifacts in the image store",
        )  # fmt: skip
    return image
