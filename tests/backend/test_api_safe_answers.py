"""Answers that are safe to show: no server paths in error messages, reports served with a strict
Content-Security-Policy (that still lets the self-contained HTML report draw its heatmap) and nosniff."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec, model_files, upload_model

from backend.api.errors import scrub_server_paths
from backend.api.routes.assessments import REPORT_HEADERS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_scrub_server_paths_keeps_only_file_names() -> None:
    roots = ["/srv/amulet/artifacts", "/srv/amulet"]
    text = (
        "The torch checkpoint (/srv/amulet/artifacts/uploads/p1/models/m1/weights.upload) is damaged; see /srv/amulet"
    )
    assert scrub_server_paths(text, roots) == "The torch checkpoint (weights.upload) is damaged; see amulet"
    nested = {"field": "weights", "message": ["at '/srv/amulet/db.sqlite'", 3]}
    assert scrub_server_paths(nested, roots) == {"field": "weights", "message": ["at 'db.sqlite'", 3]}
    assert scrub_server_paths("/srv/other/file.txt", roots) == "/srv/other/file.txt"  # not the service's


def test_422_messages_never_show_artifact_store_paths(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    spec = json.loads(model_files(tmp_path)[0])
    spec.pop("weights_sha256")  # so that the weights are opened (and fail), not refused for their checksum
    damaged = b"PK\x03\x04" + b"\x00" * 100  # looks like a torch zip archive, is not one
    response = upload_model(client, project_headers, json.dumps(spec).encode(), damaged)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "weights"
    assert "damaged" in detail["message"]
    for root in (service_settings.resolved_artifact_dir, service_settings.home):
        assert str(root) not in response.text and str(root.resolve()) not in response.text
    assert "uploads/" not in response.text


def _tiny_report(directory: Path) -> dict[str, Path]:
    """The report files of a real (tiny) assessment: census, baseline and outlier removal, evasion, one seed."""
    import torch

    from amulet.assess import load_spec, render_reports, run_assessment

    torch.set_num_threads(1)
    results = run_assessment(load_spec(census_spec(seeds=[0])), cache_dir=directory / "cache", device="cpu")
    return render_reports(results, directory / "out")


@pytest.fixture(scope="module")
def report_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _tiny_report(tmp_path_factory.mktemp("report"))


def test_report_downloads_carry_csp_and_nosniff(
    client: TestClient, project_headers, service_settings, report_files: dict[str, Path]
) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.core.storage import ArtifactStore, file_sha256

    created = client.post("/assessments", json={"spec": census_spec()}, headers=project_headers).json()
    store = ArtifactStore.from_settings(service_settings)
    with get_sessionmaker(service_settings)() as session:
        for fmt, key in (("html", "html"), ("pdf", "pdf"), ("json", "json"), ("junit", "junit")):
            path = store.report_dir(created["id"]) / report_files[key].name
            shutil.copyfile(report_files[key], path)
            crud.record_report(
                session,
                assessment_id=created["id"],
                format=fmt,
                path=str(path),
                sha256=file_sha256(path),
                size_bytes=path.stat().st_size,
            )
        session.commit()
    base = f"/assessments/{created['id']}"
    for url in (
        f"{base}/report.html",
        f"{base}/report.pdf",
        f"{base}/report.json",
        f"{base}/report.xml",
    ):
        response = client.get(url, headers=project_headers)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["x-content-type-options"] == "nosniff", url
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src" not in csp, url  # nothing may be fetched
    html = client.get(f"{base}/report.html", headers=project_headers)
    assert html.content == report_files["html"].read_bytes()


def _serve_with_headers(root: Path, headers: dict[str, str]) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def end_headers(self) -> None:
            for name, value in headers.items():
                self.send_header(name, value)
            super().end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _dump_dom(url: str, profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=8000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_report_renders_its_heatmap_under_the_served_csp(report_files: dict[str, Path], tmp_path: Path) -> None:
    """Chromium loads the report over HTTP with the API's report headers; the heatmap is still drawn.

    A policy without 'unsafe-inline' scripts, served the same way, stops the drawing: the check can fail.
    """
    root = report_files["html"].parent
    served, port = _serve_with_headers(root, REPORT_HEADERS)
    strict_headers = {**REPORT_HEADERS, "Content-Security-Policy": "default-src 'none'; img-src data:"}
    strict, strict_port = _serve_with_headers(root, strict_headers)
    try:
        dom = _dump_dom(f"http://127.0.0.1:{port}/{report_files['html'].name}", tmp_path / "a")
        assert 'class="hm"' in dom.stdout, dom.stderr[-2000:]  # plotly drew the heatmap trace
        blocked = _dump_dom(f"http://127.0.0.1:{strict_port}/{report_files['html'].name}", tmp_path / "b")
        assert "<body" in blocked.stdout and 'class="hm"' not in blocked.stdout
    finally:
        served.shutdown()
        strict.shutdown()


def test_a_busy_database_pool_is_a_503_with_retry_after(service_settings) -> None:
    """When every pooled connection stays busy past SQLAlchemy's pool timeout (100 pollers at once), the
    answer is a 503 that says to retry, not a bare 500."""
    import asyncio
    import json

    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from backend.api.errors import database_busy_handler
    from backend.main import create_app

    app = create_app(service_settings)
    assert app.exception_handlers[PoolTimeoutError] is database_busy_handler
    response = asyncio.run(database_busy_handler(None, PoolTimeoutError("QueuePool limit reached")))  # type: ignore[arg-type]
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert "busy" in json.loads(bytes(response.body))["detail"]["message"]
