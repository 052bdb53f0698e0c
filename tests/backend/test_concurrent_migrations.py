"""Processes that start together (uvicorn workers, Celery) may migrate one new SQLite file at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

# Each process imports everything, says it is ready, then waits for the same start signal, so the
# migrations really do begin together.
_MIGRATE = """
import sys, time
from pathlib import Path
from backend.core.config import Settings
from backend.core.db import run_migrations
settings = Settings()
folder = Path(sys.argv[1])
(folder / f"ready-{sys.argv[2]}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
run_migrations(settings)
"""


def test_concurrent_migrations_of_a_new_sqlite_file_all_succeed(tmp_path: Path):
    database = tmp_path / "amulet.db"
    env = {**os.environ, "AMULET_HOME": str(tmp_path), "AMULET_DATABASE_URL": f"sqlite:///{database}"}
    root = Path(__file__).resolve().parents[2]
    n = 4
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, str(tmp_path), str(i)],
            env=env,
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * n, errors
    tables = sa.inspect(sa.create_engine(f"sqlite:///{database}")).get_table_names()
    assert "projects" in tables and "alembic_version" in tables
