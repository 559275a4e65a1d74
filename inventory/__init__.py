"""The inventory: PostgreSQL through SQLAlchemy 2.0 async, with Alembic migrations."""
