"""Service commands: ``amulet serve`` (API + worker + dashboard), ``amulet worker``, ``amulet submit`` (CI client)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from amulet.cli._app import app

#: Exit codes of ``amulet submit`` (the same as ``amulet assess``).
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_NOT_RUN = 0, 1, 2, 3
#: Statuses of a finished assessment on the server (``partial``: some cells errored, the rest is reported).
FINISHED_STATUSES = ("succeeded", "partial", "failed", "cancelled")
#: Report formats ``amulet submit`` downloads: URL suffix -> file name.
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf", "json": "results.json", "xml": "junit.xml"}
DEMO_NAME = "demo: census"


def _err(message: str) -> None:
    typer.echo(message, err=True)


# -------------------------------------------------------------------------------------------------------- worker
@app.command("worker")
def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once (one per GPU is a good start).")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: solo (one process), prefork or threads.")] = "solo",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    migrate: Annotated[bool, typer.Option(help="Apply database migrations before consuming.")] = True,
) -> None:
    """Run a Celery worker that executes assessments (broker and database from the AMULET_* settings)."""
    from amulet.settings import get_settings

    settings = get_settings()
    if migrate:
        from backend.main import prestart

        token = prestart(settings)
        if token:
            _err(f"Created the admin API token (shown once): {token}")
    from amulet.utils._threads import thread_count

    # Tasks running at once share the cores: an automatic thread count divides them. The jobs apply the
    # setting when they run (worker.jobs), in whichever pool process they run; torch is not imported here.
    threads = thread_count(settings.num_threads, processes=concurrency if pool != "solo" else 1)
    os.environ["AMULET_NUM_THREADS"] = str(threads)
    get_settings.cache_clear()
    from worker.celery_app import celery_app

    argv = ["worker", "-Q", settings.task_queue, "--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--loglevel", loglevel, "--hostname", f"amulet-{settings.task_queue}@%h", "--without-gossip"]
    argv += ["--without-mingle"]
    celery_app.worker_main(argv)


# --------------------------------------------------------------------------------------------------------- serve
def _demo_spec() -> dict[str, Any]:
    """A small census assessment a first visitor can look at (about 5 minutes on 2 CPU cores).

    Expected: baseline accuracy >= 84 % (measured 84.5 / 84.7 / 84.4 % on seeds 0 / 1 / 2; the test rows'
    majority rate is 76 %). The attacks are sized to show the baseline's risk: PGD at epsilon 0.1 on the
    [0, 1]-scaled features, online LiRA with 16 shadows, subgroup gaps; 3 seeds, so intervals are meaningful.
    """
    from amulet import registry

    attacks: dict[str, dict[str, Any]] = {
        "evasion": {"attack": "pgd", "params": {"epsilon": 0.1, "iterations": 10, "max_samples": 1000}},
        "discriminatory_behavior": {"attack": "subgroup_metrics"},
        "membership_inference": {"attack": "lira", "params": {"num_shadow": 16}},
    }
    risks = [
        {"risk": r, **entry}
        for r, entry in attacks.items()
        if _has_risk(registry, r) and any(a.key == entry["attack"] for a in registry.attacks(r))
    ]
    defenses = [d for d in ("adversarial_training", "outlier_removal") if _has_defense(registry, d)]
    return {
        "name": DEMO_NAME,
        "description": "Seeded by `amulet serve --demo`: two defenses against three risks on UCI Adult.",
        "dataset": {"name": "census", "training_size": 10000, "test_size": 3000},
        "model": {"architecture": "linearnet", "config": {"hidden_layer_sizes": [64, 32], "batch_norm": False}},
        "training": {"epochs": 5, "batch_size": 128, "lr": 0.005},
        # Adversarial training at epsilon >= 0.05 collapses this model to the majority class on census.
        "defenses": [
            {"defense": d, **({"params": {"epsilon": 0.02}} if d == "adversarial_training" else {})} for d in defenses
        ],
        "risks": risks,
        "seeds": [0, 1, 2],
    }


def _has_risk(registry: Any, key: str) -> bool:
    return any(r.key == key for r in registry.risks()) and bool(registry.attacks(key))


def _has_defense(registry: Any, key: str) -> bool:
    return any(d.key == key for d in registry.defenses())


def seed_demo(settings: Any) -> str | None:
    """Queue the demo assessment in the default project unless it exists; returns its id (None if it existed)."""
    from sqlalchemy import select

    from backend import crud
    from backend.core.db import DEFAULT_PROJECT, get_sessionmaker
    from backend.core.queue import enqueue_assessment
    from backend.models import Assessment, Project
    from backend.planning import plan_submission

    with get_sessionmaker(settings)() as session:
        project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if project is None:
            return None
        exists = session.scalar(
            select(Assessment.id).where(Assessment.project_id == project.id, Assessment.name == DEMO_NAME)
        )
        if exists:
            return None
        spec = _demo_spec()
        planned = plan_submission(session, project_id=project.id, spec=spec, name=DEMO_NAME)
        row = crud.create_assessment(
            session,
            project_id=project.id,
            name=DEMO_NAME,
            spec=spec,
            resolved_spec=planned.resolved_spec,
            training_keys=planned.training_keys,
            cells=planned.cells,
        )
        session.commit()
        assessment_id = row.id
    enqueue_assessment(settings, assessment_id)
    return assessment_id


#: Name of the token ``amulet serve --demo`` mints for the dashboard (a new one replaces it at each start).
DEMO_TOKEN_NAME = "demo (printed by amulet serve --demo)"


def mint_demo_token(settings: Any) -> str:
    """A ``submit`` token of the default project for the demo's visitor; returns its value (shown once).

    Enough to look at the demo and launch assessments from the dashboard, not to mint or revoke tokens (the
    admin token is not printed again after first start). The admin is its minter, and the previous demo
    token is revoked, so restarts do not pile up live tokens.
    """
    from sqlalchemy import select

    from backend import crud
    from backend.core.db import DEFAULT_PROJECT, get_sessionmaker
    from backend.models import ApiToken, Project

    with get_sessionmaker(settings)() as session:
        project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if project is None:
            raise RuntimeError("The default project is missing; the database was not initialised.")
        admin = session.scalar(
            select(ApiToken.id).where(ApiToken.is_admin.is_(True), ApiToken.revoked_at.is_(None)).limit(1)
        )
        previous = select(ApiToken.id).where(
            ApiToken.project_id == project.id, ApiToken.name == DEMO_TOKEN_NAME, ApiToken.revoked_at.is_(None)
        )
        for token_id in list(session.scalars(previous)):
            crud.revoke_token(session, token_id=token_id)
        _row, plaintext = crud.create_token(
            session, project_id=project.id, name=DEMO_TOKEN_NAME, scope="submit", minted_by=admin
        )
        session.commit()
    return plaintext


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
    import importlib.util

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


@app.command("serve")
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
    import os

    from amulet.settings import get_settings
    from backend.main import prestart

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


# -------------------------------------------------------------------------------------------------------- submit
class _SubmitError(Exception):
    pass


def _check(response: Any, what: str) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, dict) and "message" in detail:
            detail = f"{detail.get('field', '')}: {detail['message']}"
        raise _SubmitError(f"{what} failed ({response.status_code}): {detail}")
    return response.json()


def _load_spec_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _SubmitError(f"Cannot read the spec {path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise _SubmitError(f"The spec {path} must hold a mapping (YAML or JSON object).")
    return spec


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def upload_references(client: Any, spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """Upload the files a spec references (dataset path, model file or weights) and reference them by id.

    ``model.file`` (an exported ``.pt2``/``.onnx`` graph) is uploaded as ``POST /models`` field ``model``;
    ``model.weights`` with the architecture spec JSON next to it as ``spec`` + ``weights``.
    """
    spec = json.loads(json.dumps(spec))
    dataset = spec.get("dataset") or {}
    if isinstance(dataset, dict) and dataset.get("path"):
        path = _resolve(base, dataset.pop("path"))
        form: dict[str, Any] = {"name": path.name}
        if dataset.get("label"):
            form["label"] = dataset.pop("label")
        sensitive = dataset.pop("sensitive", None) or []
        if sensitive:
            form["sensitive"] = ",".join(sensitive)
        with path.open("rb") as handle:
            uploaded = _check(
                client.post("/datasets", files={"file": (path.name, handle)}, data=form), "Dataset upload"
            )
        dataset["id"] = uploaded["id"]
        _err(f"uploaded dataset {path.name}: id {uploaded['id']}, sha256 {uploaded['sha256'][:12]}")
    model = spec.get("model") or {}
    if isinstance(model, dict) and model.get("file"):
        path = _resolve(base, str(model.pop("file")))
        if not path.is_file():
            raise _SubmitError(
                f"model.file: {path} does not exist. Export the model with `amulet export-model` (a .pt2, or "
                "--onnx for .onnx) and name that file."
            )
        with path.open("rb") as handle:
            uploaded = _check(
                client.post("/models", files={"model": (path.name, handle)}, data={"name": path.name}),
                "Model upload",
            )
        for key in ("architecture", "capacity", "config"):
            model.pop(key, None)
        model["id"] = uploaded["id"]
        shape = "x".join(str(v) for v in uploaded.get("input_shape") or [])
        _err(
            f"uploaded model {path.name} ({uploaded.get('format')}, input shape [{shape}], "
            f"{uploaded.get('num_classes')} classes, {uploaded.get('num_parameters', 0):,} parameters): "
            f"id {uploaded['id']}, sha256 {uploaded['sha256'][:12]}"
        )
    elif isinstance(model, dict) and model.get("weights"):
        from amulet.io import SPEC_FILENAME

        weights = _resolve(base, model.pop("weights"))
        arch = weights.with_suffix(".json")
        if not arch.is_file():
            arch = weights.parent / SPEC_FILENAME
        if not arch.is_file():
            raise _SubmitError(
                f"No architecture spec next to {weights}: expected {weights.with_suffix('.json').name} or "
                f"{SPEC_FILENAME} (written by `amulet export-model`)."
            )
        with arch.open("rb") as spec_handle, weights.open("rb") as weights_handle:
            files = {"spec": (arch.name, spec_handle), "weights": (weights.name, weights_handle)}
            uploaded = _check(client.post("/models", files=files, data={"name": weights.name}), "Model upload")
        for key in ("architecture", "capacity", "config"):
            model.pop(key, None)
        model["id"] = uploaded["id"]
        _err(f"uploaded model {weights.name}: id {uploaded['id']}, sha256 {uploaded['sha256'][:12]}")
    return spec


def wait_for(client: Any, assessment_id: str, *, poll: float, timeout: float, quiet: bool) -> dict[str, Any]:
    """Poll ``GET /assessments/{id}/status`` (``304`` while nothing changed) until it finishes, with a progress
    bar on stderr; returns the finished assessment's detail (``GET /assessments/{id}``)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} cells"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    ) as bar:
        task = bar.add_task("queued", total=None)
        etag = ""
        while True:
            response = client.get(f"/assessments/{assessment_id}/status", headers={"If-None-Match": etag})
            if response.status_code != 304:
                state = _check(response, "Reading the assessment")
                etag = response.headers.get("etag", "")
                progress = state["progress"]
                bar.update(
                    task, description=state["status"], total=progress["cells_total"], completed=progress["cells_done"]
                )
                if state["status"] in FINISHED_STATUSES:
                    return _check(client.get(f"/assessments/{assessment_id}"), "Reading the assessment")  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise _SubmitError(f"Gave up waiting after {timeout:.0f} s; the assessment {assessment_id} goes on.")
            time.sleep(poll)


@app.command("submit")
def submit_command(
    spec: Annotated[Path, typer.Argument(help="Assessment spec (YAML or JSON); local files it names are uploaded.")],
    server: Annotated[str | None, typer.Option(help="API URL (default: the AMULET_API_URL setting).")] = None,
    token: Annotated[str | None, typer.Option(help="API token (default: the AMULET_ADMIN_TOKEN setting).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result and exit with its code.")] = True,
    junit: Annotated[Path | None, typer.Option(help="Write the JUnit XML report here.")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Download every report into this directory.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 6 * 3600,
    poll: Annotated[float, typer.Option(help="Seconds between status reads.")] = 2.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Submit an assessment to an Amulet server (for CI pipelines).

    Exit code: 0 every policy check passed, 1 a check failed, 2 error (the server refused the spec, e.g. a
    model that does not fit the dataset; a training or cell errored; the assessment failed), 3 a check could
    not run (with --no-wait: 0 once queued).
    """
    import httpx

    from amulet.settings import get_settings

    settings = get_settings()
    server = (server or settings.api_url).rstrip("/")
    token = token or settings.admin_token
    if not token:
        _err("An API token is needed: pass --token or set AMULET_ADMIN_TOKEN.")
        raise typer.Exit(EXIT_ERROR)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=server, headers=headers, timeout=120.0) as client:
            body = upload_references(client, _load_spec_file(spec), spec.resolve().parent)
            created = _check(client.post("/assessments", json={"spec": body}), "Submitting the assessment")
            assessment_id = created["id"]
            seconds = (created.get("estimate") or {}).get("seconds")
            estimated = f" (estimated {seconds:,.0f} s of work)" if isinstance(seconds, (int, float)) else ""
            _err(f"assessment {assessment_id}: {created['n_cells']} cells queued on {server}{estimated}")
            if not wait:
                typer.echo(assessment_id)
                raise typer.Exit(EXIT_PASS)
            detail = wait_for(client, assessment_id, poll=poll, timeout=timeout, quiet=quiet)
            downloads: dict[str, Path] = {}
            if report_dir is not None:
                report_dir.mkdir(parents=True, exist_ok=True)
                downloads.update({fmt: report_dir / name for fmt, name in REPORT_FILES.items()})
            if junit is not None:
                downloads["xml"] = junit
            for fmt, target in downloads.items():
                response = client.get(f"/assessments/{assessment_id}/report.{fmt}")
                if response.status_code == 200:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(response.content)
                else:
                    _err(f"no {fmt} report ({response.status_code})")
    except _SubmitError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_ERROR) from exc
    except httpx.HTTPError as exc:
        _err(f"Cannot reach the Amulet server at {server}: {exc}")
        raise typer.Exit(EXIT_ERROR) from exc
    for error in detail.get("errors", [])[:10]:
        _err(f"error: {error}")
    for warning in (detail.get("summary") or {}).get("warnings") or []:
        if isinstance(warning, dict) and warning.get("message"):
            _err(f"warning: {warning['message']}")
    code = submit_exit_code(detail)
    typer.echo(f"assessment {assessment_id} {detail['status']}: exit code {code}")
    raise typer.Exit(code)


def submit_exit_code(detail: dict[str, Any]) -> int:
    """The exit code of ``amulet submit --wait`` for a finished assessment (``GET /assessments/{id}``).

    ``succeeded``: the assessment's own code (0 pass, 1 a check failed, 3 a check could not run); ``partial``
    (some cell or training errored): its code when that is 1 or 2, else 2, so an error never exits 0;
    ``failed``, ``cancelled`` or anything else: 2.
    """
    status, code = detail.get("status"), detail.get("exit_code")
    if code is None or status not in ("succeeded", "partial"):
        return EXIT_ERROR
    if status == "partial" and int(code) not in (EXIT_FAIL, EXIT_ERROR):
        return EXIT_ERROR
    return int(code)
