"""The cell-result cache on real census data and real models: a re-run reuses every unchanged ``ok`` cell
without running its attack; any changed input (attack parameters, seed, defense stack, code) recomputes
exactly the cells it affects; errors are never cached; the switches recompute; a broken file is a miss."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from amulet import registry
from amulet.assess import (
    AssessmentResults,
    CellCache,
    CellResult,
    plan_assessment,
    run_assessment,
    run_training,
    training_counts,
)
from amulet.assess import _cell_cache as cell_cache_module
from amulet.assess._report import render_html
from amulet.cli import app
from amulet.registry import AttackInfo, CellContext, ThreatModel
from amulet.settings import get_settings

from .conftest import _registered, tiny_spec

#: One entry per call of a counting attack: (attack key, defense keys, seed, shift).
CALLS: list[tuple[str, tuple[str, ...], int, float]] = []


class ShiftParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shift: float = Field(default=0.0, ge=0, le=1, description="Added to the scores (changes the numbers).")


def _record(key: str, ctx: CellContext, params: ShiftParams) -> None:
    CALLS.append((key, tuple(ctx.defense_keys), ctx.seed, params.shift))


def _count_mi(ctx: CellContext, params: ShiftParams) -> dict[str, float]:
    """Loss-threshold membership inference (real model, real rows); one metric is NaN (not measured)."""
    from sklearn.metrics import roc_auc_score

    _record("t_count_mi", ctx, params)
    n = min(len(ctx.member), len(ctx.test), 300)
    rows = torch.cat([ctx.member.x[:n], ctx.test.x[:n]]).to(ctx.device)
    labels = torch.cat([ctx.member.y[:n], ctx.test.y[:n]]).to(ctx.device)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(ctx.target(rows), labels, reduction="none").cpu().numpy()
    auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -loss))
    return {"auc": auc + params.shift, "tpr_at_fpr": math.nan, "balanced_acc": auc / 2, "mean_loss": float(loss.mean())}


def _count_di(ctx: CellContext, params: ShiftParams) -> dict[str, float]:
    """The target's accuracy on the adversary's rows, shifted; the AUC is not measured."""
    _record("t_count_di", ctx, params)
    with torch.no_grad():
        predicted = ctx.target(ctx.adversary.x[:300].to(ctx.device)).argmax(1).cpu()
    accuracy = float((predicted == ctx.adversary.y[:300]).float().mean())
    return {"distinguishing_accuracy": accuracy + params.shift, "auc": math.nan}


def _count_broken(ctx: CellContext, params: ShiftParams) -> dict[str, float]:
    _record("t_count_broken", ctx, params)
    raise RuntimeError("boom: the counting attack always fails")


_TM = ThreatModel(knowledge="black-box: losses", data="member and test rows", budget="one query per row")
COUNTING = [
    AttackInfo("t_count_mi", "P1", "Counting MI (test)", "membership_inference", None, ShiftParams, _TM, _count_mi),
    AttackInfo("t_count_di", "P4", "Counting DI (test)", "distribution_inference", None, ShiftParams, _TM, _count_di),
    AttackInfo("t_count_broken", "S2", "Counting, fails (test)", "poisoning", None, ShiftParams, _TM, _count_broken),
]  # fmt: skip

MI = {"risk": "membership_inference", "attack": "t_count_mi"}
DI = {"risk": "distribution_inference", "attack": "t_count_di"}
SHRINK = {"defense": "t_shrink", "params": {"factor": 0.5}}
LOSS = {"risk": "membership_inference", "attack": "t_loss_threshold"}


@pytest.fixture(autouse=True)
def counting_attacks(test_registrations: None) -> Iterator[list[tuple[str, tuple[str, ...], int, float]]]:
    """Register the counting attacks (restoring anything replaced) and start each test with no calls."""
    saved = {a.key: registry._ATTACKS.get(a.key) for a in COUNTING}
    for info in COUNTING:
        registry.register_attack(info, force=True)
    CALLS.clear()
    yield CALLS
    for key, old in saved.items():
        if old is None:
            registry._ATTACKS.pop(key, None)
        else:
            registry._ATTACKS[key] = old


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model the tests measure, trained once (each test copies them into its own cache)."""
    root = tmp_path_factory.mktemp("cell-cache-models")
    with _registered():
        spec = tiny_spec(defenses=[{"defense": "t_shrink", "params": {"factor": [0.5, 0.25]}}], risks=[LOSS])
        plan = plan_assessment(spec)
        for training in plan.trainings:
            run_training(plan, training.key, cache_dir=root, device="cpu")
    return root / "models"


@pytest.fixture
def cache(tmp_path: Path, trained_models: Path) -> Path:
    """A cache directory of this test, holding the trained models and no cell result."""
    shutil.copytree(trained_models, tmp_path / "cache" / "models")
    return tmp_path / "cache"


def _run(spec: dict[str, Any], cache: Path, **kwargs: Any) -> AssessmentResults:
    return run_assessment(spec, cache_dir=cache, device="cpu", **kwargs)


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def _cells(results: AssessmentResults) -> dict[tuple[str, str, int], CellResult]:
    return {(c.row, c.attack, c.seed): c for c in results.cells}


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "cells").glob("*.json"))


def test_a_rerun_reuses_every_ok_cell_without_running_its_attack(cache: Path):
    spec = tiny_spec(defenses=[SHRINK], risks=[MI, DI], seeds=[0, 1])
    trained = training_counts()["trained"]
    first = _run(spec, cache)
    assert training_counts()["trained"] == trained  # the models come from the copied model cache
    n_cells = 2 * 2 * 2
    assert len(CALLS) == n_cells and all(c.status == "ok" for c in first.cells)
    assert not any(c.cached for c in first.cells) and all(c.computed_seconds is None for c in first.cells)
    assert len(_entries(cache)) == n_cells
    assert any(math.isnan(v) for c in first.cells for v in c.metrics.values())  # NaN must round-trip

    second = _run(spec, cache)
    assert len(CALLS) == n_cells  # no attack ran again
    assert [c.key for c in second.cells] == [c.key for c in first.cells]
    for before, after in zip(first.cells, second.cells):
        assert after.cached and after.status == before.status == "ok" and after.reason == before.reason
        assert _same_metrics(after.metrics, before.metrics), after.key
        assert (after.model_sha256, after.data_sha256) == (before.model_sha256, before.data_sha256)
        assert after.computed_seconds == before.seconds  # the original compute time is kept; seconds is this run's
    # The summaries and the results JSON are those of the first run; the report says the cells were reused.
    assert [(a.row, a.values) for a in first.accuracy] == [(a.row, a.values) for a in second.accuracy]
    assert [(m.row, m.metric, m.values) for m in first.metrics] == [(m.row, m.metric, m.values) for m in second.metrics]
    reread = AssessmentResults.model_validate_json(second.model_dump_json())
    assert all(c.cached for c in reread.cells) and _same_metrics(reread.cells[0].metrics, first.cells[0].metrics)
    assert "reused from the cell cache" not in render_html(first, interactive=False)
    assert f"{n_cells} of {n_cells} cells reused from the cell cache" in render_html(second, interactive=False)


KEY_CHANGES = ["attack params", "defense stack", "seed", "model weights", "data", "device", "library version",
               "amulet version", "amulet code", "attack code", "setting"]  # fmt: skip


@pytest.mark.parametrize("change", KEY_CHANGES)
def test_the_key_covers_every_input_of_a_cell(monkeypatch: pytest.MonkeyPatch, change: str):
    def key(spec: dict[str, Any], **kwargs: Any) -> str | None:
        plan = plan_assessment(spec)
        cell = next(c for c in plan.cells if c.row == "t_shrink" and c.attack == "t_count_mi" and c.seed == 0)
        args: dict[str, Any] = {"model_sha256": "a" * 64, "data_sha256": "b" * 64, "device": "cpu", "code": [_count_mi]}
        return CellCache.make_key(plan, cell.key, **{**args, **kwargs})

    spec = tiny_spec(defenses=[SHRINK], risks=[MI, DI], seeds=[0, 1])
    base = key(spec)
    assert base is not None and len(base) == 64 and key(spec) == base  # deterministic
    kwargs: dict[str, Any] = {}
    if change == "attack params":
        spec = tiny_spec(defenses=[SHRINK], risks=[{**MI, "params": {"shift": 0.5}}, DI], seeds=[0, 1])
    elif change == "defense stack":
        spec = tiny_spec(defenses=[{"defense": "t_shrink", "params": {"factor": 0.25}}], risks=[MI, DI], seeds=[0, 1])
    elif change == "seed":
        spec = tiny_spec(defenses=[SHRINK], risks=[MI, DI], seeds=[1, 0])  # seed 0 is now the second seed
        assert key(spec) == base  # the order of seeds does not matter ...
        spec["dataset"]["member_fraction"] = 0.6  # ... but the split of every seed does
    elif change == "model weights":
        kwargs["model_sha256"] = "c" * 64
    elif change == "data":
        kwargs["data_sha256"] = "c" * 64
    elif change == "device":
        kwargs["device"] = "cuda"
    elif change == "library version":
        real = cell_cache_module._library_versions
        monkeypatch.setattr(cell_cache_module, "_library_versions", lambda: {**real(), "torch": "0.0.1"})
    elif change == "amulet version":
        monkeypatch.setattr("amulet.__version__", "0.0.0-other")
    elif change == "setting":
        real_settings = cell_cache_module._key_settings
        monkeypatch.setattr(cell_cache_module, "_key_settings", lambda: {**real_settings(), "population_mode": "x"})
    elif change == "amulet code":
        monkeypatch.setattr(cell_cache_module, "code_fingerprint", lambda: "0" * 64)
    else:
        kwargs["code"] = [_count_di]
    assert key(spec, **kwargs) != base


@pytest.mark.parametrize("change", ["attack params", "seed", "defense stack"])
def test_a_changed_input_recomputes_only_the_cells_it_affects(
    cache: Path, caplog: pytest.LogCaptureFixture, change: str
):
    spec = tiny_spec(defenses=[SHRINK], risks=[MI, DI], seeds=[0])
    first = _run(spec, cache)
    assert len(CALLS) == 4
    CALLS.clear()
    if change == "attack params":
        changed = tiny_spec(defenses=[SHRINK], risks=[{**MI, "params": {"shift": 0.5}}, DI], seeds=[0])
        expected = {("baseline", "t_count_mi", 0), ("t_shrink", "t_count_mi", 0)}
    elif change == "seed":
        changed = tiny_spec(defenses=[SHRINK], risks=[MI, DI], seeds=[0, 1])
        expected = {(row, attack, 1) for row in ("baseline", "t_shrink") for attack in ("t_count_mi", "t_count_di")}
    else:
        changed = tiny_spec(defenses=[{"defense": "t_shrink", "params": {"factor": 0.25}}], risks=[MI, DI], seeds=[0])
        expected = {("t_shrink", "t_count_mi", 0), ("t_shrink", "t_count_di", 0)}
    with caplog.at_level(logging.INFO, logger="amulet.assess"):
        second = _run(changed, cache)
    assert "another cell's result" not in caplog.text  # recomputed because the key changed, not by the last check
    recomputed = {k for k, c in _cells(second).items() if not c.cached}
    assert recomputed == expected
    assert len(CALLS) == len(expected)
    assert all(c.status == "ok" for c in second.cells)
    before = _cells(first)
    for key, cell in _cells(second).items():
        if cell.cached:
            assert _same_metrics(cell.metrics, before[key].metrics)
    if change == "attack params":
        mi = _cells(second)[("baseline", "t_count_mi", 0)]
        assert mi.metrics["auc"] == pytest.approx(before[("baseline", "t_count_mi", 0)].metrics["auc"] + 0.5)


def test_a_code_change_recomputes_every_cell(cache: Path, monkeypatch: pytest.MonkeyPatch):
    spec = tiny_spec(risks=[MI, DI], seeds=[0])
    _run(spec, cache)
    assert len(CALLS) == 2
    monkeypatch.setattr(cell_cache_module, "code_fingerprint", lambda: "0" * 64)
    changed = _run(spec, cache)
    assert len(CALLS) == 4 and not any(c.cached for c in changed.cells)
    monkeypatch.undo()  # the original code again: its entries are still there
    again = _run(spec, cache)
    assert len(CALLS) == 4 and all(c.cached for c in again.cells)


def test_attack_code_outside_amulet_is_part_of_the_key(cache: Path, monkeypatch: pytest.MonkeyPatch):
    spec = tiny_spec(risks=[MI], seeds=[0])
    _run(spec, cache)
    real = cell_cache_module.source_fingerprint
    # The counting attack lives in this test package: a change to it recomputes the cell ...
    monkeypatch.setattr(cell_cache_module, "source_fingerprint", lambda module: "f" * 64)
    assert not _run(spec, cache).cells[0].cached and len(CALLS) == 2
    # ... and code with no source to fingerprint is never cached.
    monkeypatch.setattr(cell_cache_module, "source_fingerprint", lambda module: None)
    assert not _run(spec, cache).cells[0].cached and not _run(spec, cache).cells[0].cached
    assert len(CALLS) == 4
    monkeypatch.setattr(cell_cache_module, "source_fingerprint", real)
    assert _run(spec, cache).cells[0].cached and len(CALLS) == 4


def test_error_and_not_run_cells_are_never_cached(cache: Path):
    broken = {"risk": "poisoning", "attack": "t_count_broken"}
    image_only = {"risk": "data_reconstruction", "attack": "t_image_only"}
    spec = tiny_spec(risks=[broken, image_only, MI], seeds=[0])
    first = _run(spec, cache)
    assert [c.status for c in first.cells] == ["error", "not_run", "ok"]
    assert len(_entries(cache)) == 1  # only the ok cell
    second = _run(spec, cache)
    assert [(c.status, c.cached) for c in second.cells] == [("error", False), ("not_run", False), ("ok", True)]
    assert [c[0] for c in CALLS] == ["t_count_broken", "t_count_mi", "t_count_broken"]
    assert "RuntimeError: boom" in second.cells[0].reason


@pytest.mark.parametrize("switch", ["reuse_cells=False", "AMULET_CELL_CACHE=false"])
def test_the_switches_recompute_every_cell(cache: Path, monkeypatch: pytest.MonkeyPatch, switch: str):
    spec = tiny_spec(risks=[MI, DI], seeds=[0])
    _run(spec, cache)
    assert len(CALLS) == 2
    if switch == "reuse_cells=False":
        recomputed = _run(spec, cache, reuse_cells=False)
        assert not any(c.cached for c in recomputed.cells) and len(CALLS) == 4
    else:
        monkeypatch.setenv("AMULET_CELL_CACHE", "false")
        get_settings.cache_clear()
        try:
            assert get_settings().cell_cache is False
            recomputed = _run(spec, cache)
            assert not any(c.cached for c in recomputed.cells) and len(CALLS) == 4
            assert all(c.cached for c in _run(spec, cache, reuse_cells=True).cells)  # the argument wins
            assert len(CALLS) == 4
        finally:
            monkeypatch.delenv("AMULET_CELL_CACHE")
            get_settings.cache_clear()
    # Recomputed results are stored again: the next default run reuses them.
    assert get_settings().cell_cache is True
    assert all(c.cached for c in _run(spec, cache).cells) and len(CALLS) == 4


def _swap_in_other_cell(path: Path, other: Path) -> None:
    entry = json.loads(other.read_text())
    entry["key"] = path.stem  # a well-formed entry of this key holding another cell's result
    path.write_text(json.dumps(entry))


CORRUPTIONS = {
    "garbage": lambda path, other: path.write_bytes(b"\x00\xff{not json"),
    "truncated": lambda path, other: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "foreign": lambda path, other: path.write_text(json.dumps({"kind": "something.else", "key": path.stem})),
    "error status": lambda path, other: path.write_text(path.read_text().replace('"ok"', '"error"')),
    "another cell": _swap_in_other_cell,
}  # fmt: skip


@pytest.mark.parametrize("corruption", [*CORRUPTIONS, "unreadable"])
def test_a_corrupt_cache_file_is_a_miss_not_a_crash(cache: Path, caplog: pytest.LogCaptureFixture, corruption: str):
    spec = tiny_spec(risks=[MI, DI], seeds=[0])
    first = _run(spec, cache)
    entries = _entries(cache)
    assert len(entries) == 2 and len(CALLS) == 2
    for path, other in ((entries[0], entries[1]), (entries[1], entries[0])):
        original = path.read_bytes()
        if corruption == "unreadable":  # a directory where the file should be: reading and writing both fail
            path.unlink()
            path.mkdir()
        else:
            CORRUPTIONS[corruption](path, other)
        assert corruption == "unreadable" or path.read_bytes() != original
        if corruption == "another cell":
            break  # the other file keeps its own result (the swap is only checked one way)
    with caplog.at_level(logging.INFO, logger="amulet.assess"):
        second = _run(spec, cache)
    assert all(c.status == "ok" for c in second.cells)
    recomputed = [c for c in second.cells if not c.cached]
    assert len(recomputed) == (1 if corruption == "another cell" else 2)
    assert len(CALLS) == 2 + len(recomputed)
    for cell in recomputed:
        assert _same_metrics(cell.metrics, next(c for c in first.cells if c.key == cell.key).metrics)
    assert "recomputing" in caplog.text or "recomputed" in caplog.text
    if corruption == "unreadable":
        assert "could not write" in caplog.text
    third = _run(spec, cache)  # a corrupt file was replaced by the recomputed result
    assert all(c.cached for c in third.cells) == (corruption != "unreadable")


def test_nan_metrics_round_trip_and_infinite_ones_are_not_stored(tmp_path: Path):
    cache = CellCache(tmp_path)
    result = CellResult(key="c.x", row="baseline", risk="membership_inference", attack="t", seed=0, status="ok",
                        metrics={"auc": 0.5, "tpr_at_fpr": math.nan}, seconds=1.25)  # fmt: skip
    assert cache.put("a" * 64, result)
    stored = json.loads(cache.path("a" * 64).read_text())  # strict JSON: NaN is written as null
    assert stored["result"]["metrics"] == {"auc": 0.5, "tpr_at_fpr": None}
    again = cache.get("a" * 64)
    assert again is not None and again.seconds == 1.25 and _same_metrics(again.metrics, result.metrics)
    infinite = result.model_copy(update={"metrics": {"auc": math.inf}})
    assert not cache.put("b" * 64, infinite) and cache.get("b" * 64) is None
    assert not cache.put("c" * 64, result.model_copy(update={"status": "error"}))
    with pytest.raises(ValueError, match=r"'key' parameter of CellCache\.path"):
        cache.get("../../etc/passwd")


def test_the_cli_flag_no_cell_cache_recomputes(tmp_path: Path, cache: Path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(risks=[MI], seeds=[0])))

    def assess(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "report"
        args = ["assess", str(path), "--out", str(out), "--cache-dir", str(cache), "--device", "cpu"]
        result = CliRunner().invoke(app, [*args, "-q", "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads((out / "results.json").read_text())["cells"]

    assert [c["cached"] for c in assess()] == [False] and len(CALLS) == 1
    assert [c["cached"] for c in assess()] == [True] and len(CALLS) == 1
    assert [c["cached"] for c in assess("--no-cell-cache")] == [False] and len(CALLS) == 2
