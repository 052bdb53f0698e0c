"""The runner on real census data: data split, content-addressed model cache, cells that cannot apply or fail,
independent units of work, imported weights and progress with an ETA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from amulet import registry
from amulet.assess import (
    ModelCache,
    load_spec,
    plan_assessment,
    run_assessment,
    run_cell,
    run_training,
    training_counts,
)
from amulet.assess._data import architecture_spec, load_bundle, make_model_factory, split_for_seed, split_indices
from amulet.io import save_model
from amulet.progress import CallbackProgress
from amulet.recipes import PostStage, Recipe
from amulet.registry import DefenseInfo, NoParams
from amulet.utils import TrainConfig

from .conftest import tiny_spec

pytestmark = pytest.mark.usefixtures("test_registrations")

RISKS = [
    {"risk": "membership_inference", "attack": "t_loss_threshold"},
    {"risk": "data_reconstruction", "attack": "t_image_only"},
    {"risk": "poisoning", "attack": "t_broken"},
    {"risk": "distribution_inference", "attack": "t_nan"},
]


def test_member_and_adversary_rows_are_a_disjoint_seeded_partition():
    spec = load_spec(tiny_spec(risks=[{"risk": "evasion"}]))
    bundle = load_bundle(spec.dataset)
    assert len(bundle.train) == 1000 and len(bundle.test) == 500
    assert bundle.modality == "tabular" and bundle.train.z is not None and bundle.train.z.shape[1] == 2
    m_idx, a_idx = split_indices(bundle, 0, 0.5)
    assert not set(m_idx) & set(a_idx)
    assert sorted([*m_idx, *a_idx]) == list(range(len(bundle.train)))
    member, adversary = split_for_seed(bundle, 0, 0.5)
    assert torch.equal(member.x, bundle.train.x[m_idx]) and torch.equal(adversary.y, bundle.train.y[a_idx])
    again, _ = split_for_seed(bundle, 0, 0.5)
    other, _ = split_for_seed(bundle, 1, 0.5)
    assert torch.equal(member.x, again.x)
    assert not torch.equal(member.x, other.x)
    assert abs(member.y.float().mean() - adversary.y.float().mean()) < 0.02  # stratified by label


def test_cells_that_cannot_apply_or_fail_never_crash_the_run(tmp_path: Path):
    spec = tiny_spec(defenses=[{"defense": "t_shrink"}], risks=RISKS,
                     policy=[{"metric": "distribution_inference.auc", "op": "<=", "threshold": 0.6}])  # fmt: skip
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    by = {(c.row, c.attack, c.seed): c for c in results.cells}
    assert len(results.cells) == 2 * 4 * 2
    for row in ("baseline", "t_shrink"):
        for seed in (0, 1):
            ok = by[(row, "t_loss_threshold", seed)]
            assert ok.status == "ok" and 0 <= ok.metrics["auc"] <= 1
            assert 50 < ok.metrics["model.test_accuracy"] <= 100
            not_run = by[(row, "t_image_only", seed)]
            assert not_run.status == "not_run" and "needs image data" in not_run.reason
            error = by[(row, "t_broken", seed)]
            assert error.status == "error" and "RuntimeError: boom" in error.reason
            nan = by[(row, "t_nan", seed)]
            assert nan.status == "ok" and math.isnan(nan.metrics["auc"])
    assert results.metric("baseline", "distribution_inference", "auc").n == 0
    assert {c.status for c in results.checks} == {"not_run"}
    assert results.exit_code == 2  # a cell errored (no check failed)
    # The matrix marks the intended cell and reports not-run cells as such.
    matrix = {(m.row, m.risk): m for m in results.matrix}
    assert matrix[("t_shrink", "membership_inference")].intended
    assert matrix[("t_shrink", "data_reconstruction")].status == "not_run"
    assert matrix[("t_shrink", "poisoning")].status == "error"


def test_a_rerun_trains_nothing_and_reproduces_every_value(tmp_path: Path):
    spec = tiny_spec(defenses=[{"defense": "t_shrink", "params": {"factor": [0.5, 0.1]}}], risks=RISKS[:1])
    before = training_counts()
    first = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    middle = training_counts()
    second = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    after = training_counts()
    n_models = 3 * 2
    assert middle["trained"] - before["trained"] == n_models
    assert after["trained"] == middle["trained"]  # the second run trained nothing
    assert first.reproducibility["trainings"] == {"trained": n_models, "reused": 0, "imported": 0}
    assert second.reproducibility["trainings"] == {"trained": 0, "reused": n_models, "imported": 0}
    assert first.reproducibility["model_sha256"] == second.reproducibility["model_sha256"]
    assert len(set(first.reproducibility["model_sha256"].values())) == n_models
    assert [c.metrics for c in first.cells] == [c.metrics for c in second.cells]
    # Weights are safetensors with a JSON sidecar; nothing is pickled.
    files = sorted(p.suffix for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert set(files) == {".json", ".safetensors"} and files.count(".safetensors") == n_models


def test_units_are_independent_and_idempotent(tmp_path: Path):
    spec = load_spec(tiny_spec(defenses=[{"defense": "t_shrink"}], risks=RISKS[:1], seeds=[5]))
    plan = plan_assessment(spec)
    cell = next(c for c in plan.cells if c.row == "t_shrink")
    # A cell run alone trains its model on demand ...
    alone = run_cell(plan, cell.key, cache_dir=tmp_path / "a", device="cpu")
    assert alone.status == "ok" and alone.key == cell.key and alone.seed == 5
    # ... and gives the same result as the cell inside a whole run.
    whole = run_assessment(spec, cache_dir=tmp_path / "b", device="cpu")
    assert next(c for c in whole.cells if c.key == cell.key).metrics == alone.metrics
    record = run_training(plan, cell.training_key, cache_dir=tmp_path / "a", device="cpu")
    assert record["status"] == "reused" and record["model_sha256"] == alone.model_sha256
    assert ModelCache(tmp_path / "a").has(record["cache_key"])
    with pytest.raises(KeyError, match="No cell"):
        run_cell(plan, "c.nope", cache_dir=tmp_path / "a")


def test_the_defended_recipe_is_what_gets_measured(tmp_path: Path):
    spec = load_spec(tiny_spec(defenses=[{"defense": "t_shrink", "params": {"factor": 0.1}}], risks=RISKS[:1],
                               seeds=[0]))  # fmt: skip
    plan = plan_assessment(spec)
    records = {t.row: run_training(plan, t.key, cache_dir=tmp_path, device="cpu") for t in plan.trainings}

    bundle = load_bundle(spec.dataset)
    factory = make_model_factory(architecture_spec(spec.model, bundle))
    cache = ModelCache(tmp_path)
    base = cache.load(records["baseline"]["cache_key"], factory)
    shrunk = cache.load(records["t_shrink"]["cache_key"], factory)
    with torch.no_grad():
        ratio = shrunk(bundle.test.x[:50]).abs().mean() / base(bundle.test.x[:50]).abs().mean()
    assert 0.05 < ratio < 0.2  # the same training, then the post stage scaled the logits by 0.1


def test_imported_weights_are_the_baseline(tmp_path: Path):
    spec = tiny_spec(risks=RISKS[:1], seeds=[0])
    loaded = load_spec(spec)
    bundle = load_bundle(loaded.dataset)
    arch = architecture_spec(loaded.model, bundle)
    model = Recipe(TrainConfig(epochs=1)).train(make_model_factory(arch), bundle.train, seed=11)
    _spec_path, weights_path = save_model(model, tmp_path / "model", arch)
    spec["model"]["weights"] = str(weights_path)
    plan = plan_assessment(spec)
    record = run_training(plan, plan.trainings[0].key, cache_dir=tmp_path / "cache", device="cpu")
    assert record["status"] == "imported"
    cached = ModelCache(tmp_path / "cache").load(record["cache_key"], make_model_factory(arch))
    for a, b in zip(cached.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_progress_reports_every_unit_with_an_eta(tmp_path: Path):
    events = []
    spec = tiny_spec(risks=RISKS[:1], seeds=[0, 1])
    run_assessment(spec, cache_dir=tmp_path, device="cpu", progress=CallbackProgress(events.append))
    overall = [e for e in events if e.key == "assessment"]
    assert overall[0].kind == "start" and overall[0].total == 2 + 2
    advances = [e for e in overall if e.kind == "advance"]
    assert [e.completed for e in advances] == [1, 2, 3, 4]
    # the ETA extrapolates the rate so far: elapsed / completed * remaining (0 at the last unit)
    for e in advances:
        assert e.eta == pytest.approx(e.elapsed / e.completed * (4 - e.completed))
    assert overall[-1].kind == "finish"
    assert any(e.key == "train" for e in events)  # training reports through the same interface


def _extra_buffer(model: torch.nn.Module) -> torch.nn.Module:
    model.register_buffer("extra", torch.ones(3))
    return model


@pytest.mark.parametrize("declared", [False, True])
def test_a_defense_that_changes_the_structure_must_declare_it(tmp_path: Path, declared: bool):
    def stage(params: NoParams) -> PostStage:
        return PostStage("t_restructure", {}, apply=lambda model, data, **kw: _extra_buffer(model),
                         adapt_model=_extra_buffer if declared else None)  # fmt: skip

    registry.register_defense(DefenseInfo("t_restructure", "T2", "Restructure (test)", (), None, NoParams, stage),
                              force=True)  # fmt: skip
    try:
        spec = tiny_spec(defenses=[{"defense": "t_restructure"}], risks=RISKS[:1], seeds=[0])
        results = run_assessment(spec, cache_dir=tmp_path, device="cpu")
    finally:
        registry._DEFENSES.pop("t_restructure", None)
    cell = next(c for c in results.cells if c.row == "t_restructure")
    if declared:
        assert cell.status == "ok"
    else:
        assert cell.status == "error"
        assert "does not fit the architecture" in cell.reason and "adapt_model" in cell.reason
