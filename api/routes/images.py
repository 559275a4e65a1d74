"""The golden image catalog."""

from __future__ import annotations

from fastapi import APIRouter, Request

import images

from ..auth import Operator
from ..schemas import ImageList, ImageOut

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("", response_model=ImageList, summary="Golden images and whether they can boot")
async def list_images(request: Request, _: Operator) -> ImageList:
    store = request.app.state.image_store
    return ImageList(
        items=[
            ImageOut(
                name=image.name,
                description=image.description,
                os=f"{image.os.family} {image.os.version}",
                profile=image.tuning_profile,
                ready=store.is_ready(image),
            )
            for image in images.load_catalog().values()
        ]
    )
