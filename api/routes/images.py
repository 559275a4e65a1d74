"""The golden image catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

import images
from identity.oidc import Principal
from identity.policy import Action

from ..auth import authorize
from ..schemas import ImageList, ImageOut

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("", response_model=ImageList, summary="Golden images and whether they can boot")
async def list_images(
    request: Request, _: Annotated[Principal, Depends(authorize("image", Action.READ))]
) -> ImageList:
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
