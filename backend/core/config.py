"""Service view of the one settings object (:class:`amulet.settings.Settings`).

The service adds no second settings class: it reads :func:`amulet.settings.get_settings` and derives the
URLs the database, the broker and the Celery result backend need. :func:`check_settings` fails at start-up
on values the service cannot run with.
"""

from __future__ import annotations

from amulet.settings import Settings, get_settings

__all__ = ["Settings", "check_settings", "database_url", "get_settings", "result_backend_url"]


def database_url(settings: Settings) -> str:
    """SQLAlchemy URL of the service database, with the psycopg 3 driver for PostgreSQL URLs."""
    url = settings.resolved_database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def result_backend_url(settings: Settings) -> str:
    """Celery result backend (needed by chords).

    Empty ``result_backend`` means the database: ``db+<database url>`` for PostgreSQL; for the embedded
    SQLite default a separate SQLite file next to it, so that the worker's result writes never hold the
    service database's write lock.
    """
    if settings.result_backend:
        return settings.result_backend
    url = database_url(settings)
    if url.startswith("sqlite"):
        return f"db+sqlite:///{settings.home / 'celery-results.db'}"
    return "db+" + url


def check_settings(settings: Settings) -> None:
    """Raise ``ValueError`` naming the setting when the service cannot start with ``settings``."""
    url = database_url(settings)
    if not url.startswith(("sqlite", "postgresql")):
        raise ValueError(
            "The 'database_url' setting (AMULET_DATABASE_URL) must be a sqlite:// or postgresql:// URL. "
            f"Got {settings.database_url!r} instead."
        )
    broker = settings.resolved_broker_url
    if not broker.startswith(("redis://", "rediss://", "sqla+", "amqp://", "memory://")):
        raise ValueError(
            "The 'broker_url' setting (AMULET_BROKER_URL) must be a redis://, amqp:// or sqla+<sqlalchemy url> URL. "
            f"Got {settings.broker_url!r} instead."
        )
    if settings.admin_token and len(settings.admin_token) < 16:
        raise ValueError(
            "The 'admin_token' setting (AMULET_ADMIN_TOKEN) must be at least 16 characters long "
            "(leave it empty to have one generated). Got a shorter value instead."
        )
