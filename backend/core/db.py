"""Database engines, sessions, migrations and first-start initialisation.

One engine per URL per process (``get_engine``). SQLite runs in WAL mode with a busy timeout so the API
and the worker can share the file. Migrations are Alembic's (``run_migrations`` = ``alembic upgrade
head``); :func:`init_db` creates the first project and its admin token; :func:`prestart` does all of it
before the API or a worker starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from backend.core.config import Settings, check_settings, database_url
from backend.core.security import generate_token, hash_token, token_display_prefix
from backend.models import ApiToken, Project

__all__ = [
    "prestart",
    "ALEMBIC_INI",
    "DEFAULT_PROJECT",
    "dispose_engines",
    "get_engine",
    "get_sessionmaker",
    "init_db",
    "run_migrations",
    "session_scope",
]

logger = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
DEFAULT_PROJECT = "default"
_MIGRATION_LOCK = 0x616D756C6574  # "amulet"

_lock = threading.Lock()
_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=40
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


def get_engine(settings: Settings) -> Engine:
    """The process-wide engine for ``settings``' database URL."""
    return _entry(settings)[0]


def get_sessionmaker(settings: Settings) -> sessionmaker[Session]:
    """The session factory bound to :func:`get_engine` (``expire_on_commit=False``)."""
    return _entry(settings)[1]


def _entry(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    url = database_url(settings)
    with _lock:
        if url not in _engines:
            engine = _make_engine(url)
            _engines[url] = (engine, sessionmaker(bind=engine, expire_on_commit=False))
        return _engines[url]


def dispose_engines() -> None:
    """Drop every cached engine (after a fork, and between tests)."""
    with _lock:
        for engine, _ in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (worker and CLI code)."""
    session = get_sessionmaker(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations of one SQLite file across processes (API workers and Celery start together).

    PostgreSQL gets an advisory lock inside the migration transaction instead; SQLite has none, so two
    processes migrating a new file at once would both try to create the tables.
    """
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_migrations(settings: Settings) -> None:
    """Apply every Alembic revision (``alembic upgrade head``) to ``settings``' database."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "alembic"))
    engine = get_engine(settings)
    with _sqlite_file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # One migrator at a time when the API and the workers start together.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def init_db(session: Session, settings: Settings) -> str | None:
    """Create the default project and its admin token on first start.

    With ``settings.admin_token`` set, that token is registered, or restored when its row was revoked, and
    None is returned.
    Otherwise, when no admin token exists yet, a new one is generated, stored hashed, and returned: the
    caller shows it once, since it cannot be recovered.
    """
    project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
    if project is None:
        project = Project(name=DEFAULT_PROJECT)
        session.add(project)
        session.flush()
    if settings.admin_token:
        digest = hash_token(settings.admin_token)
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None:
            session.add(
                ApiToken(
                    project_id=project.id,
                    name="admin (from settings)",
                    token_hash=digest,
                    prefix=token_display_prefix(settings.admin_token),
                    is_admin=True,
                    scope="manage",
                )
            )
        else:
            # The operator's token is valid after every start, whatever happened to its row meanwhile.
            row.revoked_at, row.is_admin, row.scope = None, True, "manage"
        session.commit()
        return None
    existing = session.scalar(select(ApiToken).where(ApiToken.is_admin.is_(True), ApiToken.revoked_at.is_(None)))
    if existing is not None:
        session.commit()
        return None
    token = generate_token()
    session.add(
        ApiToken(
            project_id=project.id,
            name="admin",
            token_hash=hash_token(token),
            prefix=token_display_prefix(token),
            is_admin=True,
            scope="manage",
        )
    )
    session.commit()
    return token


def prestart(settings: Settings) -> str | None:
    """Check the settings, migrate the database and initialise it; returns a newly generated admin token."""
    check_settings(settings)
    settings.resolved_artifact_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings)
    with get_sessionmaker(settings)() as session:
        return init_db(session, settings)
