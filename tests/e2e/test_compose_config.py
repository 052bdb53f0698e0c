"""docker-compose.yml: the distributed form is valid (``docker-compose config``) and wired as documented."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    env = {**os.environ, "AMULET_ADMIN_TOKEN": "amt_compose-config-test-token"}
    done = subprocess.run([*command, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_services_and_health_checks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"api", "worker", "dashboard", "redis", "postgres"}
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_worker_reserves_a_gpu(compose: dict) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_shared_artifact_volume_and_settings(compose: dict) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["AMULET_BROKER_URL"].startswith("redis://redis")
        assert env["AMULET_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["AMULET_ARTIFACT_DIR"] == "/data/artifacts"
        mounts = services[name]["volumes"]
        assert any("artifacts" in str(m) and "/data" in str(m) for m in mounts), mounts
    assert services["dashboard"]["environment"]["AMULET_API_URL"] == "http://api:8000"


def test_admin_token_is_required() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    env = {k: v for k, v in os.environ.items() if k != "AMULET_ADMIN_TOKEN"}
    done = subprocess.run([*command, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "AMULET_ADMIN_TOKEN" in done.stderr


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "USER amulet" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
