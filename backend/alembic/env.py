"""Alembic environment: migrates the connection handed over by ``backend.core.db.run_migrations``.

Run from the command line (``alembic -c backend/alembic.ini upgrade head``) it connects to the URL of the one
settings object instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from backend.core.config import get_settings
from backend.core.db import get_engine
from backend.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with get_engine(get_settings()).begin() as new_connection:
        _run(new_connection)


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `alembic upgrade head` against a database.")
run_migrations_online()
