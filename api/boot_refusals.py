"""What the boot service does when a boot's secret is asked for a second time: someone else may
have it (docs/boot-threat-model.md)."""

from __future__ import annotations

import logging
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import boot_sessions
from inventory.models import BootSession

from .problems import Problem

log = logging.getLogger("metalplane.boot")


async def refuse_again(
    db: AsyncSession, boot: BootSession, *, event: str, slug: str, title: str, detail: str
) -> NoReturn:
    """An event on the node, committed before the 409 (the refusal must not undo it)."""
    await boot_sessions.record_suspicious(db, boot, event)
    await db.commit()
    log.warning("node %s: %s", boot.node_id, event)
    raise Problem(409, slug, title, detail)
