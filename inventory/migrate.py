"""Run the inventory's Alembic migrations programmatically (used by `metalplane migrate`,
`metalplane up` and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str, schema: str = "public") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    return config


def upgrade(url: str, schema: str = "public", revision: str = "head") -> None:
    command.upgrade(alembic_config(url, schema), revision)


async def upgrade_async(url: str, schema: str = "public") -> None:
    # env.py runs its own event loop, so it goes to a thread.
    await asyncio.to_thread(upgrade, url, schema)
