"""configure_threads: the num_threads setting reaches torch; automatic counts share the cores."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from amulet.settings import get_settings
from amulet.utils import configure_threads


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    get_settings.cache_clear()


def test_an_explicit_count_is_applied() -> None:
    assert configure_threads(1) == 1
    assert torch.get_num_threads() == 1


def test_automatic_shares_the_cores_among_processes() -> None:
    cores = os.cpu_count() or 1
    assert configure_threads(0) == cores
    assert configure_threads(0, processes=cores * 4) == 1  # never below one thread
    if cores >= 2:
        assert configure_threads(0, processes=2) == cores // 2
        assert torch.get_num_threads() == cores // 2


def test_the_setting_is_read_when_no_count_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMULET_NUM_THREADS", "1")
    get_settings.cache_clear()
    assert configure_threads() == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize(("kwargs", "message"), [({"num_threads": -1}, "num_threads"), ({"processes": 0}, "processes")])
def test_bad_values_are_named(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_threads(**kwargs)


def test_an_assessment_runs_with_the_configured_threads(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from amulet.assess import run_assessment

    spec = {
        "name": "threads",
        "dataset": {"name": "census", "training_size": 300, "test_size": 200},
        "model": {"architecture": "linearnet", "config": {"hidden_layer_sizes": [8]}},
        "training": {"epochs": 1},
        "risks": [{"risk": "discriminatory_behavior"}],
        "seeds": [0],
    }
    torch.set_num_threads(2)
    monkeypatch.setenv("AMULET_NUM_THREADS", "1")
    get_settings.cache_clear()
    results = run_assessment(spec, cache_dir=tmp_path)
    assert results.reproducibility["hardware"]["torch_threads"] == 1
