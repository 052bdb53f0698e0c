"""configure_threads / layer1_threads: the num_threads setting reaches torch; automatic counts share the cores
and leave the busy ones alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from amulet import _cores
from amulet.settings import get_settings
from amulet.utils import _threads, automatic_threads, available_cores, busy_cores, configure_threads, layer1_threads


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    get_settings.cache_clear()
    _cores._cache = None


def _machine(monkeypatch: pytest.MonkeyPatch, cores: int, runnable: int | None) -> None:
    """A machine of ``cores`` cores on which ``runnable`` tasks (the caller included) are runnable now."""
    monkeypatch.setattr(_cores, "available_cores", lambda: cores)
    monkeypatch.setattr(_cores, "_runnable_now", lambda: runnable)
    monkeypatch.setattr(_cores, "_SAMPLE_PAUSE_S", 0.0)
    _cores._cache = None


def test_an_explicit_count_is_applied() -> None:
    assert configure_threads(1) == 1
    assert torch.get_num_threads() == 1


def test_automatic_shares_the_cores_among_processes_on_an_idle_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cores=8, runnable=1)  # only the caller runs
    assert configure_threads(0) == 8 and torch.get_num_threads() == 8
    assert configure_threads(0, processes=2) == 4
    assert configure_threads(0, processes=32) == 1  # never below one thread


def test_automatic_leaves_the_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cores=2, runnable=3)  # two busy processes besides the caller
    assert busy_cores() == 2.0
    assert configure_threads(0) == 1 and torch.get_num_threads() == 1
    assert configure_threads(2) == 2  # an explicit count is applied whatever the load
    _machine(monkeypatch, cores=8, runnable=4)
    assert automatic_threads() == 5 and automatic_threads(processes=4) == 2


def test_without_a_runnable_count_the_load_average_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cores=4, runnable=None)
    monkeypatch.setattr(_cores.os, "getloadavg", lambda: (3.2, 0.0, 0.0))
    assert busy_cores() == 3.2
    assert automatic_threads() == 1


def test_the_load_is_read_from_the_kernel_and_reused_briefly() -> None:
    assert available_cores() >= 1
    first = busy_cores()
    assert first >= 0
    assert busy_cores() == first  # cached: layer 1 asks before every training


def test_layer1_uses_one_thread_for_a_small_model_and_caps_a_large_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMULET_NUM_THREADS", "0")
    get_settings.cache_clear()
    torch.set_num_threads(2)
    _machine(monkeypatch, cores=2, runnable=1)
    with layer1_threads(torch.nn.Linear(4, 2)) as threads:
        assert threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(_threads, "SMALL_MODEL_PARAMETERS", 1)
    with layer1_threads(torch.nn.Linear(4, 2)) as threads:
        assert threads == 2  # idle: the caller's count stands
    _machine(monkeypatch, cores=2, runnable=3)
    with layer1_threads(torch.nn.Linear(4, 2)) as threads:
        assert threads == 1  # busy: capped to the free cores (at least one)
    assert torch.get_num_threads() == 2


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


def test_counting_cores_does_not_load_torch() -> None:
    # `amulet worker`'s supervisor decides its jobs' thread counts and must stay torch-free (its jobs fork)
    code = "import sys; from amulet._cores import automatic_threads; automatic_threads(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
