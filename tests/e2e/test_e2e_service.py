"""The whole service end to end: `amulet submit` against uvicorn + a real Celery worker process.

Two configurations: the embedded default (SQLite database + SQLite broker, started by `amulet serve`) and
the distributed form (PostgreSQL + Redis, API and worker started separately). Then reliability: the
worker is SIGKILLed in the middle of an assessment, a new one starts, and the assessment completes with
exactly one row per cell.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from e2e_stack import CLI, Stack
from service_testing import ADMIN_TOKEN

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _check_reports(out: Path, junit: Path) -> None:
    results = json.loads((out / "results.json").read_text())
    assert results["exit_code"] == 0
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    root = ET.parse(junit).getroot()
    assert root.tag in ("testsuites", "testsuite")
    assert int(root.find(".//property[@name='exit_code']").get("value")) == 0  # type: ignore[union-attr]


def _check_signed_bundle(stack: Stack, tmp_path: Path) -> None:
    """The latest assessment's signed bundle: byte-identical downloads that verify against the served key."""
    from amulet.assess import verify_report

    listed = httpx.get(f"{stack.url}/assessments", params={"limit": 1}, headers=HEADERS, timeout=10).json()
    assessment_id = listed["data"][0]["id"]
    first = httpx.get(f"{stack.url}/assessments/{assessment_id}/bundle.zip", headers=HEADERS, timeout=30)
    second = httpx.get(f"{stack.url}/assessments/{assessment_id}/bundle.zip", headers=HEADERS, timeout=30)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/zip" and first.content == second.content
    key = httpx.get(f"{stack.url}/signing-key", timeout=10)  # public: no token needed
    assert key.status_code == 200, key.text
    (tmp_path / "bundle.zip").write_bytes(first.content)
    (tmp_path / "server-key.pem").write_text(key.json()["public_key_pem"])
    result = verify_report(tmp_path / "bundle.zip", public_key=tmp_path / "server-key.pem")
    assert result.ok, result.problems
    assert result.key_id == key.json()["key_id"]
    assert {"report.html", "report.pdf", "results.json", "junit.xml"} <= set(result.files)


def _submit_and_check(stack: Stack, spec: Path, tmp_path: Path) -> None:
    out, junit = tmp_path / "reports", tmp_path / "ci" / "junit.xml"
    done = stack.submit(spec, "--report-dir", str(out), "--junit", str(junit))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{stack.logs()}"
    assert "succeeded: exit code 0" in done.stdout
    _check_reports(out, junit)


def test_embedded_default_serve_and_submit(embedded_stack: Stack, tiny_spec: Path, tmp_path: Path) -> None:
    """`amulet serve` (API + worker, SQLite + SQLite broker) and `amulet submit --wait`: exit code 0."""
    embedded_stack.start("serve", [*CLI, "serve", "--no-dashboard", "--port", str(embedded_stack.port)])
    embedded_stack.wait_healthy()
    assert (embedded_stack.home / "amulet.db").is_file()
    # The worker starts next to the API and creates the broker's SQLite file when it connects.
    deadline = time.monotonic() + 60
    while not (embedded_stack.home / "broker.db").is_file():
        assert time.monotonic() < deadline, f"the worker never created broker.db\n{embedded_stack.logs()}"
        time.sleep(0.2)
    _submit_and_check(embedded_stack, tiny_spec, tmp_path)
    _check_signed_bundle(embedded_stack, tmp_path)
    # The terminal stays readable: the URLs, one line per status change, no Celery or access logs (those go
    # to AMULET_HOME/logs/).
    deadline = time.monotonic() + 30
    terminal = ""
    while time.monotonic() < deadline and ": succeeded in " not in terminal:
        time.sleep(1)
        terminal = (embedded_stack.home / "serve.log").read_text(errors="replace")
    assert "Amulet API" in terminal and ": running" in terminal and ": succeeded in " in terminal, terminal
    for noise in ("] received", "] succeeded in", "chord_unlock", "GET /health", "INFO:"):
        assert noise not in terminal, f"{noise!r} on the terminal:\n{terminal}"
    assert {"api.log", "worker.log"} <= {p.name for p in (embedded_stack.home / "logs").iterdir()}
    embedded_stack.kill("serve", sig=2)  # Ctrl-C stops the API and the worker together
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{embedded_stack.url}/health", timeout=2)


@pytest.mark.integration
def test_distributed_redis_postgres_submit(distributed_stack: Stack, tiny_spec: Path, tmp_path: Path) -> None:
    """uvicorn + a Celery worker process + Redis + PostgreSQL, through `amulet submit`: exit code 0."""
    distributed_stack.start_api()
    distributed_stack.start_worker()
    health = httpx.get(f"{distributed_stack.url}/health").json()
    assert health["database"]["backend"] == "postgresql" and health["broker"]["transport"] == "redis"
    _submit_and_check(distributed_stack, tiny_spec, tmp_path)


def _detail(stack: Stack, assessment_id: str) -> dict:
    """The assessment's detail with its cells and trainings (listed at their own paginated endpoints)."""
    url = f"{stack.url}/assessments/{assessment_id}"
    detail = httpx.get(url, headers=HEADERS, timeout=10).json()
    for part in ("cells", "trainings"):
        page = httpx.get(f"{url}/{part}", params={"limit": 500}, headers=HEADERS, timeout=10).json()
        assert page["count"] == len(page["data"]), page["count"]  # these tests' assessments fit one page
        detail[part] = page["data"]
    return detail


def _wait_status(stack: Stack, assessment_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = _detail(stack, assessment_id)
        if detail["status"] in ("succeeded", "partial", "failed", "cancelled"):
            return detail
        time.sleep(0.5)
    raise AssertionError(f"assessment {assessment_id} did not finish in {timeout} s\n{stack.logs()}")


def _count_cell_rows(stack: Stack, assessment_id: str) -> tuple[int, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.env["AMULET_DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM cells WHERE assessment_id = :a"), {"a": assessment_id})
        keys = connection.execute(
            text("SELECT count(DISTINCT key) FROM cells WHERE assessment_id = :a"), {"a": assessment_id}
        )
        result = int(rows.scalar_one()), int(keys.scalar_one())
    engine.dispose()
    return result


@pytest.mark.integration
def test_worker_sigkill_mid_assessment(distributed_stack: Stack, tmp_path: Path) -> None:
    """SIGKILL the worker while it runs a task; a new worker finishes with exactly one row per cell."""
    spec = tmp_path / "kill.yaml"
    spec.write_text(
        "name: kill test\n"
        "dataset: {name: census, training_size: 1000, test_size: 300}\n"
        "model: {architecture: linearnet, capacity: m1}\n"
        "training: {epochs: 2, batch_size: 64}\n"
        "defenses:\n  - {name: outlier, defense: outlier_removal}\n"
        "risks:\n  - {risk: evasion}\n"
        "seeds: [0, 1]\n"
    )
    stack = distributed_stack
    stack.start_api()
    stack.start_worker("worker-1")
    queued = stack.submit(spec, "--no-wait")
    assert queued.returncode == 0, queued.stderr
    assessment_id = queued.stdout.strip().splitlines()[-1]
    # kill the worker while a task is running (its row says so)
    deadline = time.monotonic() + 240
    victim: tuple[str, str] | None = None
    while victim is None and time.monotonic() < deadline:
        detail = _detail(stack, assessment_id)
        running = [("training", t["key"]) for t in detail["trainings"] if t["status"] == "running"]
        running += [("cell", c["key"]) for c in detail["cells"] if c["status"] == "running"]
        if running:
            victim = running[0]
        else:
            time.sleep(0.1)
    assert victim is not None, f"no task was seen running\n{stack.logs()}"
    stack.kill("worker-1")
    assert _detail(stack, assessment_id)["status"] == "running"
    stack.start_worker("worker-2")
    detail = _wait_status(stack, assessment_id, timeout=400)
    assert detail["status"] == "succeeded", (detail["errors"], stack.logs())
    assert detail["exit_code"] == 0
    n_cells = detail["n_cells"]
    assert n_cells == 4
    assert _count_cell_rows(stack, assessment_id) == (n_cells, n_cells)
    assert all(c["status"] == "ok" for c in detail["cells"]), detail["cells"]
    kind, key = victim
    rows = detail["trainings"] if kind == "training" else detail["cells"]
    killed = next(r for r in rows if r["key"] == key)
    assert killed["attempts"] >= 2  # the killed task was redelivered and run again
    assert {r["format"] for r in detail["reports"]} >= {"html", "pdf", "json", "junit"}


def test_submit_exit_code_2_on_bad_spec(embedded_stack: Stack, tmp_path: Path) -> None:
    """A spec the server refuses: exit code 2 with the field named (no worker needed)."""
    embedded_stack.start_api()
    spec = tmp_path / "bad.yaml"
    spec.write_text("dataset: {name: census}\nrisks: [{risk: no_such_risk}]\n")
    done = embedded_stack.submit(spec)
    assert done.returncode == 2, done.stderr
    assert "risks[0].risk" in done.stderr


def test_submit_uploads_local_files(embedded_stack: Stack, tmp_path: Path) -> None:
    """`amulet submit` uploads the dataset file a spec names and references it by id."""
    from service_testing import csv_bytes

    embedded_stack.start_api()
    (tmp_path / "people.csv").write_bytes(csv_bytes())
    spec = tmp_path / "local.yaml"
    spec.write_text(
        "dataset: {path: people.csv, label: income, sensitive: [sex], training_size: 100}\n"
        "risks: [{risk: evasion}]\nseeds: [0]\n"
    )
    done = embedded_stack.submit(spec, "--no-wait")
    assert done.returncode == 0, done.stderr
    assessment_id = done.stdout.strip().splitlines()[-1]
    detail = _detail(embedded_stack, assessment_id)
    assert "id" in detail["spec"]["dataset"] and "path" not in detail["spec"]["dataset"]
    datasets = httpx.get(f"{embedded_stack.url}/datasets", headers=HEADERS).json()
    assert datasets["data"][0]["name"] == "people.csv"


def test_submit_preflight_refuses_a_model_that_does_not_fit_the_data(embedded_stack: Stack, tmp_path: Path) -> None:
    """`amulet submit` of a model with one input too few for the CSV's encoded features: the server's
    pre-flight answers 422 naming both numbers, nothing is queued, and submit exits 2 (no worker needed)."""
    from service_testing import csv_bytes, model_files

    from amulet.datasets import load_tabular_file

    embedded_stack.start_api()
    (tmp_path / "people.csv").write_bytes(csv_bytes())
    n = load_tabular_file(tmp_path / "people.csv", label="income").num_features
    spec_bytes, weights_bytes = model_files(tmp_path, n_features=n - 1)
    (tmp_path / "model.json").write_bytes(spec_bytes)
    (tmp_path / "model.safetensors").write_bytes(weights_bytes)
    spec = tmp_path / "mismatch.yaml"
    spec.write_text(
        "dataset: {path: people.csv, label: income}\nmodel: {weights: model.safetensors}\n"
        "risks: [{risk: evasion}]\nseeds: [0]\n"
    )
    done = embedded_stack.submit(spec, "--timeout", "60")  # without pre-flight it would be queued and wait
    assert done.returncode == 2, done.stderr
    assert "(422)" in done.stderr and f"expects {n - 1} input features" in done.stderr
    assert f"'people.csv' has {n} after encoding" in done.stderr
    listed = httpx.get(f"{embedded_stack.url}/assessments", headers=HEADERS, timeout=10).json()
    assert listed["count"] == 0


def test_submit_exit_codes_of_finished_statuses() -> None:
    """`amulet submit --wait` never exits 0 for an assessment in which something errored."""
    from amulet.cli._submit import submit_exit_code

    def code(status: str, exit_code: int | None) -> int:
        return submit_exit_code({"status": status, "exit_code": exit_code})

    assert [code("succeeded", c) for c in (0, 1, 3)] == [0, 1, 3]
    assert [code("partial", c) for c in (0, 1, 2, 3)] == [2, 1, 2, 2]  # a failed check still says 1
    assert [code("failed", c) for c in (0, 2, None)] == [2, 2, 2]
    assert code("cancelled", 2) == 2 and code("succeeded", None) == 2


def _own_model_spec(tmp_path: Path, n_features: int) -> Path:
    """A CSV, a residual MLP (LayerNorm, GELU; not in the registry) exported to .pt2 for ``n_features`` inputs,
    and a spec naming both as local files."""
    from graph_models import pt2_file

    model = pt2_file(tmp_path, n_features=n_features)
    spec = tmp_path / "own-model.yaml"
    spec.write_text(
        "name: own model\n"
        "dataset: {path: people.csv, label: income, sensitive: [sex], training_size: 200, test_size: 100}\n"
        f"model: {{file: {model.name}}}\n"
        "training: {epochs: 1, batch_size: 128}\n"
        "defenses:\n  - {name: outlier, defense: outlier_removal}\n"
        "risks:\n  - {risk: evasion}\n"
        "seeds: [0]\n"
    )
    return spec


def _people_csv(tmp_path: Path) -> int:
    """Write people.csv; the number of features it has after encoding (what the model must take)."""
    from service_testing import csv_bytes

    from amulet.datasets import load_tabular_file

    (tmp_path / "people.csv").write_bytes(csv_bytes(400))
    return int(load_tabular_file(tmp_path / "people.csv", label="income", sensitive=("sex",)).num_features)


@pytest.mark.slow  # about a minute on 2 cores (API + worker start-up); tests/worker covers the matrix quickly
def test_submit_uploads_a_pt2_model_and_the_worker_runs_it(embedded_stack: Stack, tmp_path: Path) -> None:
    """`amulet submit` of a spec with `model: {file: model.pt2}`: the file is uploaded (POST /models field
    'model'), referenced by id, and a Celery worker process runs the matrix to its reports."""
    embedded_stack.start_api()
    embedded_stack.start_worker()
    n = _people_csv(tmp_path)
    out = tmp_path / "reports"
    done = embedded_stack.submit(_own_model_spec(tmp_path, n), "--report-dir", str(out))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{embedded_stack.logs()}"
    assert f"(pt2, input shape [{n}], 2 classes" in done.stderr
    models = httpx.get(f"{embedded_stack.url}/models", headers=HEADERS, timeout=10).json()["data"]
    assert [(m["format"], m["input_shape"]) for m in models] == [("pt2", [n])]
    listed = httpx.get(f"{embedded_stack.url}/assessments", headers=HEADERS, timeout=10).json()["data"]
    assert _detail(embedded_stack, listed[0]["id"])["spec"]["model"] == {"id": models[0]["id"]}
    results = json.loads((out / "results.json").read_text())
    assert results["exit_code"] == 0
    assert {c["row"] for c in results["cells"] if c["status"] == "ok"} == {"baseline", "outlier"}


def test_submit_of_a_pt2_with_the_wrong_input_width_exits_2(embedded_stack: Stack, tmp_path: Path) -> None:
    """Pre-flight at submit: the uploaded .pt2 takes one feature too few; 422 naming both numbers, exit 2."""
    embedded_stack.start_api()
    n = _people_csv(tmp_path)
    done = embedded_stack.submit(_own_model_spec(tmp_path, n - 1), "--timeout", "60")
    assert done.returncode == 2, done.stderr
    assert "(422)" in done.stderr and f"expects {n - 1} input features" in done.stderr
    assert f"'people.csv' has {n}" in done.stderr
    assert httpx.get(f"{embedded_stack.url}/assessments", headers=HEADERS, timeout=10).json()["count"] == 0
