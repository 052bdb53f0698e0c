"""``amulet submit`` against a small HTTP server that answers as the Amulet API does and records what it got.

The end-to-end tests (tests/e2e) run it against the real service; these check the client's side exactly:
what it uploads and submits, how it polls, what it downloads, and the exit code and messages it gives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amulet.cli import app

JUNIT = b'<?xml version="1.0"?><testsuites><testsuite name="amulet" tests="1" failures="1"/></testsuites>'


@dataclass
class FakeApi:
    """Answers of the fake API, and the requests it received (method, path, headers, body)."""

    detail: dict[str, Any]
    statuses: list[str] = field(default_factory=lambda: ["running", "succeeded"])
    refuse: dict[str, Any] | None = None
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    polls: int = 0

    def bodies(self, method: str, path: str) -> list[bytes]:
        return [body for m, p, _h, body in self.requests if (m, p) == (method, path)]


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

        def _record(self) -> bytes:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.requests.append((self.command, self.path, dict(self.headers), body))
            return body

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self._record()
            if self.path == "/datasets":
                self._json(201, {"id": "ds-1", "sha256": "ab" * 32})
            elif self.path == "/assessments" and api.refuse is not None:
                self._json(422, {"detail": api.refuse})
            elif self.path == "/assessments":
                self._json(202, {"id": "as-1", "n_cells": 4, "estimate": {"seconds": 90.0}})
            else:
                self._json(404, {"detail": "not found"})

        def do_GET(self) -> None:
            self._record()
            if self.path == "/assessments/as-1/status":
                status = api.statuses[min(api.polls, len(api.statuses) - 1)]
                api.polls += 1
                if self.headers.get("If-None-Match") == f'"{status}"':
                    self.send_response(304)
                    self.end_headers()
                    return
                done = 4 if status == "succeeded" else 1
                progress = {"cells_total": 4, "cells_done": done}
                self._json(200, {"status": status, "progress": progress}, {"ETag": f'"{status}"'})
            elif self.path == "/assessments/as-1":
                self._json(200, api.detail)
            elif self.path == "/assessments/as-1/report.xml":
                self.send_response(200)
                self.send_header("Content-Length", str(len(JUNIT)))
                self.end_headers()
                self.wfile.write(JUNIT)
            else:
                self._json(404, {"detail": "no such report"})

    return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi(detail={"status": "succeeded", "exit_code": 1, "errors": [], "summary": {"warnings": []}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("age,sex,income\n30,F,1\n41,M,0\n")
    spec = {
        "name": "ci",
        "dataset": {"path": "data/rows.csv", "label": "income", "sensitive": ["sex"]},
        "model": {"architecture": "linearnet"},
        "risks": [{"risk": "evasion"}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def _submit(api: FakeApi, *args: str) -> Any:
    return CliRunner().invoke(app, ["submit", *args, "--server", api.url, "--token", "tok-123", "--poll", "0.01"])


def test_submit_uploads_the_dataset_submits_by_id_and_exits_with_the_assessment_code(
    fake_api: FakeApi, spec_file: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "out" / "junit.xml"
    result = _submit(fake_api, str(spec_file), "--junit", str(junit), "--quiet")
    assert result.exit_code == 1, result.output  # the assessment's own code: a policy check failed
    assert "assessment as-1 succeeded: exit code 1" in result.output
    assert "4 cells queued" in result.output and "estimated 90 s of work" in result.output

    (upload,) = fake_api.bodies("POST", "/datasets")
    assert b"30,F,1\n41,M,0" in upload  # the file itself, as multipart
    assert b'name="label"\r\n\r\nincome' in upload and b'name="sensitive"\r\n\r\nsex' in upload
    (submitted,) = fake_api.bodies("POST", "/assessments")
    body = json.loads(submitted)
    assert body["spec"]["dataset"] == {"id": "ds-1"}  # the local path is replaced by the upload's id
    assert body["spec"]["model"] == {"architecture": "linearnet"}
    assert all(h.get("Authorization") == "Bearer tok-123" for _m, _p, h, _b in fake_api.requests)
    assert junit.read_bytes() == JUNIT


def test_submit_polls_with_the_etag_until_the_assessment_finishes(fake_api: FakeApi, spec_file: Path) -> None:
    fake_api.statuses = ["queued", "running", "running", "succeeded"]
    fake_api.detail = {"status": "succeeded", "exit_code": 0, "errors": [], "summary": {}}
    result = _submit(fake_api, str(spec_file), "--quiet")
    assert result.exit_code == 0, result.output
    polls = [h.get("If-None-Match") for m, p, h, _b in fake_api.requests if p == "/assessments/as-1/status"]
    assert polls == ["", '"queued"', '"running"', '"running"']  # the second "running" was a 304


def test_a_partial_assessment_never_exits_0_and_its_errors_are_shown(fake_api: FakeApi, spec_file: Path) -> None:
    fake_api.statuses = ["partial"]
    fake_api.detail = {
        "status": "partial",
        "exit_code": 0,
        "errors": ["cell baseline/evasion/pgd/0: out of memory"],
        "summary": {"warnings": [{"message": "only 1 seed: no interval"}]},
    }
    result = _submit(fake_api, str(spec_file), "--quiet")
    assert result.exit_code == 2, result.output
    assert "error: cell baseline/evasion/pgd/0: out of memory" in result.output
    assert "warning: only 1 seed: no interval" in result.output


def test_no_wait_prints_the_id_and_exits_0(fake_api: FakeApi, spec_file: Path) -> None:
    result = _submit(fake_api, str(spec_file), "--no-wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "as-1"
    assert not [p for _m, p, _h, _b in fake_api.requests if p.endswith("/status")]


def test_a_refused_spec_exits_2_naming_the_field(fake_api: FakeApi, spec_file: Path) -> None:
    fake_api.refuse = {"field": "spec.model", "message": "the model does not fit dataset 'rows.csv'"}
    result = _submit(fake_api, str(spec_file))
    assert result.exit_code == 2
    assert "Submitting the assessment failed (422): spec.model: the model does not fit dataset 'rows.csv'" in (
        result.output
    )


def test_a_missing_model_file_and_an_unreachable_server_exit_2(fake_api: FakeApi, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dataset": {"name": "census"}, "model": {"file": "missing.pt2"}}))
    result = _submit(fake_api, str(spec))
    assert result.exit_code == 2
    assert "model.file:" in result.output and "missing.pt2 does not exist" in result.output

    spec.write_text(json.dumps({"dataset": {"name": "census"}}))
    unreachable = CliRunner().invoke(app, ["submit", str(spec), "--server", "http://127.0.0.1:9", "--token", "t"])
    assert unreachable.exit_code == 2
    assert "Cannot reach the Amulet server at http://127.0.0.1:9" in unreachable.output


def test_no_token_exits_2(spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amulet.settings import get_settings

    monkeypatch.delenv("AMULET_ADMIN_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["submit", str(spec_file), "--server", "http://127.0.0.1:9"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "An API token is needed" in result.output
