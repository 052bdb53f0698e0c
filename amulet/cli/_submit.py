"""``amulet submit``: send an assessment spec to an Amulet server over HTTP and wait for its result (for CI).

A client of the REST API only: it imports nothing of the service (``amulet serve`` and ``amulet worker`` live
with the service, in :mod:`backend.cli` and :mod:`worker.cli`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from amulet.cli._app import app

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_NOT_RUN", "EXIT_PASS", "submit_exit_code", "upload_references", "wait_for"]

#: Exit codes of ``amulet submit`` (the same as ``amulet assess``).
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_NOT_RUN = 0, 1, 2, 3
#: Statuses of a finished assessment on the server (``partial``: some cells errored, the rest is reported).
FINISHED_STATUSES = ("succeeded", "partial", "failed", "cancelled")
#: Report formats ``amulet submit`` downloads: URL suffix -> file name.
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf", "json": "results.json", "xml": "junit.xml"}


def _err(message: str) -> None:
    typer.echo(message, err=True)


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
        from amulet.io import SPEC_FILENAME  # lazy: amulet.io imports torch (seconds), needed only for weights

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
    # Import cost: rich's progress machinery is only needed while waiting.
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
    # lazy: httpx and the settings (pydantic-settings, ~0.1 s) load for `amulet submit`, not at `amulet` start-up
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
