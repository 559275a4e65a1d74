"""The migrations build exactly the schema the ORM models describe (alembic's autogenerate
comparison finds nothing to add, drop or alter), so a model change without its migration fails."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from inventory.db import create_engine
from inventory.migrate import upgrade_async
from inventory.models import Base

pytestmark = pytest.mark.asyncio(loop_scope="session")
SCHEMA = "t_migrations"


def _differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": False, "target_metadata": None},
    )
    return [d for d in compare_metadata(context, Base.metadata) if d[0] != "remove_table"
            or d[1].name != "alembic_version"]  # fmt: skip


async def test_migrations_build_the_schema_of_the_models(postgres_url: str) -> None:
    await upgrade_async(postgres_url, SCHEMA)
    engine = create_engine(postgres_url, schema=SCHEMA)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
