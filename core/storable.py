"""Models kept in PostgreSQL as JSONB: text there cannot hold NUL (U+0000), so a model that
carries one is refused at validation (a 422 for the caller), never a database error later."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, model_validator


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Storable(BaseModel):
    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        if _has_nul(self.model_dump()):
            raise ValueError("text must not contain NUL characters")
        return self
