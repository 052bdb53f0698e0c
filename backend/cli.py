"""``amulet serve``: start the API, one worker and the dashboard together, and report what they do.

A command of the service, added to the ``amulet`` command line by :func:`register` (the engine's CLI looks
this module up by name, so the engine imports nothing of the service). The worker and the dashboard run as
subprocesses (``amulet worker``, ``streamlit run``), the API as ``uvicorn backend.main:app``. Every
``amulet`` command imports this module at start: beyond typer and the standard library, its imports sit
inside the functions (import cost: the settings load pydantic-settings, the database code SQLAlchemy and
Alembic, the demo's planning the engine, seconds together).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from amulet.cli._submit import EXIT_ERROR

__all__ = ["register", "serve_command"]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _wait_healthy(url: str, processes: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _dashboard_app() -> Path | None:
    found = importlib.util.find_spec("dashboard")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "app.py"
    return path if path.is_file() else None


class _AssessmentWatch:
    """One line on the terminal each time an assessment of this service changes status (``amulet serve``'s
    quiet output: the services' own logs go to files)."""

    def __init__(self, settings: Any, api_url: str) -> None:
        self.settings, self.api_url = settings, api_url
        self.seen: dict[str, str] = {}
        self.first = True

    def poll(self) -> list[str]:
        # lazy: SQLAlchemy and the tables (~0.5 s) load for `amulet serve`, not when any `amulet` command starts
        from sqlalchemy import select

        from backend.core.db import get_sessionmaker
        from backend.models import Assessment

        try:
            with get_sessionmaker(self.settings)() as session:
                rows = list(session.scalars(select(Assessment).order_by(Assessment.created_at.desc()).limit(100)))
                states = [(r.id, r.name, r.public_status, r.n_trainings, r.n_cells, r.started_at, r.finished_at)
                          for r in rows]  # fmt: skip
        except Exception:  # the database is busy or not migrated yet: try again on the next poll
            return []
        lines = []
        for assessment_id, name, status, n_trainings, n_cells, started, finished in reversed(states):
            if self.seen.get(assessment_id) == status:
                continue
            old = self.seen.get(assessment_id)
            self.seen[assessment_id] = status
            if self.first and status in ("succeeded", "partial", "failed", "cancelled"):
                continue  # the history before this start is not news
            line = f"{time.strftime('%H:%M:%S')}  {name} ({assessment_id[:8]}): {status}"
            if status == "queued" and old is None:
                line += f", {n_trainings} trainings and {n_cells} cells"
            if finished is not None and started is not None and status in ("succeeded", "partial", "failed"):
                line += f" in {_duration((finished - started).total_seconds())}"
            if status in ("succeeded", "partial"):
                line += f"; report {self.api_url}/assessments/{assessment_id}/report.html"
            lines.append(line)
        self.first = False
        return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def serve_command(
    host: Annotated[str | None, typer.Option(help="API bind address (default: the AMULET_API_HOST setting).")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default: the AMULET_API_PORT setting).")] = None,
    worker: Annotated[bool, typer.Option(help="Start one worker.")] = True,
    dashboard: Annotated[bool, typer.Option(help="Start the dashboard (when installed).")] = True,
    demo: Annotated[bool, typer.Option(help="Queue a demo census assessment on first start.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every service's own log here instead of in log files.")
    ] = False,
) -> None:
    """Start the API, one worker and the dashboard together (Ctrl-C stops them together).

    With no configuration everything runs embedded: SQLite database and SQLite broker under AMULET_HOME.
    On first start the admin API token is generated and printed once. The terminal shows the URLs, the
    tokens and one line per assessment status change; the services' logs go to ``AMULET_HOME/logs/``
    (``--verbose`` shows them here instead).
    """
    # lazy: the settings, the database code and the demo (the engine, torch) load for `amulet serve` only
    from amulet.settings import get_settings
    from backend.core.db import prestart
    from backend.demo import mint_demo_token, seed_demo

    settings = get_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    api_url = f"http://{host}:{port}"
    token = prestart(settings)
    env = {**os.environ, "AMULET_API_URL": api_url}
    processes: list[subprocess.Popen[bytes]] = []
    names: list[str] = []
    log_dir = Path(settings.home) / "logs"
    logs: dict[str, Path] = {}

    def launch(name: str, argv: list[str]) -> None:
        if verbose:
            processes.append(subprocess.Popen(argv, env=env))
        else:
            log_dir.mkdir(parents=True, exist_ok=True)
            logs[name] = log_dir / f"{name}.log"
            with logs[name].open("ab") as out:
                processes.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
        names.append(name)

    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        quiet_api = [] if verbose else ["--log-level", "warning", "--no-access-log"]
        launch(
            "api",
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", host, "--port", str(port), *quiet_api],
        )
        if worker:
            worker_argv = [sys.executable, "-c", "from amulet.cli import app; app()", "worker", "--no-migrate"]
            launch("worker", [*worker_argv, "--loglevel", "info" if verbose else "warning"])
        app_path = _dashboard_app() if dashboard else None
        if app_path is not None:
            streamlit = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.headless", "true"]
            streamlit += ["--server.port", str(settings.dashboard_port), "--server.address", host]
            # "viewer": no Deploy button or developer menu (an auditor's app, not a Streamlit project).
            streamlit += ["--client.toolbarMode", "viewer"]
            streamlit += [] if verbose else ["--logger.level", "error"]
            launch("dashboard", [*streamlit, "--browser.gatherUsageStats", "false"])
        if not _wait_healthy(api_url, processes, timeout=120):
            _err("The API did not become healthy; stopping.")
            raise typer.Exit(EXIT_ERROR)
        demo_id = seed_demo(settings) if demo else None
        demo_token = mint_demo_token(settings) if demo else None
        typer.echo(f"Amulet API     {api_url}  (OpenAPI docs: {api_url}/docs)")
        if app_path is not None:
            typer.echo(f"Dashboard      http://{host}:{settings.dashboard_port}")
        if demo_id:
            typer.echo(f"Demo           assessment {demo_id} queued: {api_url}/assessments/{demo_id}")
        if demo_token:
            typer.echo(f"Demo token     {demo_token}")
            typer.echo("               (scope 'submit': paste it in the dashboard to see the demo and launch")
            typer.echo("               assessments; it cannot mint or revoke tokens; a new one each start)")
        if token:
            typer.echo(f"Admin token    {token}")
            typer.echo("               (shown once: store it now; it is kept only hashed)")
        elif not settings.admin_token:
            typer.echo("Admin token    printed on first start (or set AMULET_ADMIN_TOKEN)")
        typer.echo(f"Data           {settings.home}   Stop with Ctrl-C.")
        if logs:
            typer.echo(f"Logs           {log_dir}/{{{','.join(logs)}}}.log  (amulet serve -v shows them here)")
        watch = None if verbose else _AssessmentWatch(settings, api_url)
        next_poll = 0.0
        while not stopping:
            for name, process in zip(names, processes):
                if process.poll() is not None:
                    _err(f"The {name} process exited with code {process.returncode}; stopping the others.")
                    if name in logs:
                        _err(f"Last lines of {logs[name]}:\n{_log_tail(logs[name])}")
                    stopping = True
            if watch is not None and time.monotonic() >= next_poll:
                for line in watch.poll():
                    typer.echo(line)
                next_poll = time.monotonic() + 2.0
            time.sleep(0.5)
    finally:
        _stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Add ``amulet serve`` to ``app``."""
    app.command("serve")(serve_command)
