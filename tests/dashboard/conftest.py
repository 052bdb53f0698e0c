"""Fixtures of the dashboard tests: a real API (uvicorn, SQLite in a temporary directory), a real Celery
worker (SQLite broker), the Streamlit server, and a small census CSV written from the real loader.

Nothing of our own is mocked: the AppTest tests drive the dashboard's pages against the running API, and
the browser test drives the dashboard server in headless Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from dashboard_testing import (
    ADMIN_TOKEN,
    QUICK_SPEC,
    REPO,
    Service,
    free_port,
    service_env,
    stop,
    submit_and_wait,
    wait_for,
)

from amulet.datasets._sources import DATASET_SOURCES, resolve_source
from amulet.datasets._tabular import read_adult


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real FastAPI app under uvicorn on a free loopback port, with its SQLite database in a tmp dir."""
    home = tmp_path_factory.mktemp("amulet-service")
    env = service_env(home)
    port = free_port()
    log = home / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health", timeout=90, process=process, log=log)
        yield Service(url=url, token=ADMIN_TOKEN, env=env, home=home)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def worker(api: Service) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (one solo process) consuming the API's SQLite broker.

    Assessments the worker-less tests left queued are cancelled first, so the worker only runs what the
    tests that need it submit.
    """
    auth = {"Authorization": f"Bearer {api.token}"}
    for item in httpx.get(f"{api.url}/assessments", params={"limit": 500}, headers=auth, timeout=60).json()["data"]:
        if item["status"] in ("queued", "running", "finalizing"):
            httpx.post(f"{api.url}/assessments/{item['id']}/cancel", headers=auth, timeout=60)
    log = api.home / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # `amulet worker` (the CLI the service provides): one solo Celery process on the embedded broker.
            [sys.executable, "-c", "from amulet.cli import app; app()", "worker", "--no-migrate", "--pool", "solo"],
            cwd=REPO,
            env=api.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the worker exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            if "ready" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the worker did not become ready:\n{log.read_text()[-4000:]}")
        yield process
    finally:
        stop(process)


@pytest.fixture(scope="session")
def census_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small census CSV (1,200 rows, the raw UCI columns) written from the real census source."""

    source = resolve_source(DATASET_SOURCES["census"], Path(os.environ["AMULET_HOME"]) / "data" / "census")
    frame = read_adult(source.location)
    frame = frame.loc[frame["race"].isin(["White", "Black"])].drop(columns=["fnlwgt"])
    frame = frame.sample(n=1200, random_state=0).reset_index(drop=True).fillna("Unknown")
    path = tmp_path_factory.mktemp("census") / "census_small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def finished(api: Service, worker: subprocess.Popen[bytes]) -> list[dict]:
    """Two succeeded quick census assessments (for the Results and Compare pages)."""
    first = submit_and_wait(api, QUICK_SPEC)
    second = submit_and_wait(api, {**QUICK_SPEC, "name": "quick census (3 epochs)", "training": {"epochs": 3}})
    return [first, second]


@contextmanager
def _streamlit(api: Service, log_name: str) -> Iterator[str]:
    """The dashboard under ``streamlit run`` (headless, loopback, no usage statistics); its URL."""
    port = free_port()
    log = api.home / log_name
    env = {**api.env, "AMULET_API_URL": api.url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(REPO / "dashboard" / "app.py"),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/_stcore/health", timeout=90, process=process, log=log)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="session")
def dashboard_server(api: Service) -> Iterator[str]:
    """The dashboard server the browser tests share."""
    with _streamlit(api, "dashboard.log") as url:
        yield url
