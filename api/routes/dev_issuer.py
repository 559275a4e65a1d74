"""Discovery document and JWKS of the local dev issuer (mounted only when no OIDC issuer is
configured), so dev tokens are validated by the same discovery code path as production ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from identity import dev_issuer

router = APIRouter(prefix="/dev-issuer", tags=["dev issuer"])


@router.get("/.well-known/openid-configuration", summary="OIDC discovery of the dev issuer")
async def openid_configuration(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    return dev_issuer.discovery(settings.issuer_url, f"{settings.issuer_url}/jwks.json")


@router.get("/jwks.json", summary="Signing keys of the dev issuer")
async def jwks(request: Request) -> dict[str, Any]:
    return dev_issuer.jwks(request.app.state.settings.dev_issuer_key_file)
