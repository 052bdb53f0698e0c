from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from amulet.settings import Settings, get_settings


def test_environment_variables_with_prefix_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("AMULET_HOME", str(tmp_path))
    monkeypatch.setenv("AMULET_MAX_ROWS", "123")
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.max_rows == 123
    assert settings.resolved_data_dir == tmp_path / "data"
    assert settings.resolved_artifact_dir == tmp_path / "artifacts"


def test_embedded_defaults_are_sqlite_database_and_sqlite_broker(tmp_path: Path):
    settings = Settings(home=tmp_path, database_url="", broker_url="")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'amulet.db'}"
    assert settings.resolved_broker_url.startswith("sqla+sqlite:///")


def test_explicit_urls_win(tmp_path: Path):
    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://u@h/db", broker_url="redis://h:6379/0")
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.resolved_broker_url == "redis://h:6379/0"


def test_auto_device_picks_cpu_without_cuda():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Settings(device="auto").resolve_device().type == expected


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", ""])
def test_bad_device_names_the_setting(bad: str):
    with pytest.raises(ValidationError, match="AMULET_DEVICE"):
        Settings(device=bad)


def test_limits_must_be_positive():
    with pytest.raises(ValidationError, match="max_upload_bytes"):
        Settings(max_upload_bytes=0)


def test_get_settings_is_cached():
    assert get_settings() is get_settings()
