"""Defenses that change the model (DP-SGD on BatchNorm) or need sensitive attributes (debiasing) apply in
every cell that retrains with the recipe: poisoning and LiRA shadows included."""

from __future__ import annotations

from pathlib import Path

from amulet.assess import run_assessment

from .conftest import tiny_spec


def test_dp_sgd_on_batchnorm_and_debiasing_run_in_retraining_cells(tmp_path: Path):
    spec = tiny_spec(
        model={"architecture": "linearnet", "config": {"hidden_layer_sizes": [16], "batch_norm": True}},
        training={"epochs": 2, "batch_size": 128, "lr": 0.01},
        defenses=[{"defense": "dp_sgd", "params": {"epochs": 2}}, {"defense": "adversarial_debiasing"}],
        risks=[
            {"risk": "poisoning", "attack": "badnets"},
            {"risk": "membership_inference", "attack": "lira", "params": {"num_shadow": 2}},
        ],
        seeds=[0],
    )
    results = run_assessment(spec, cache_dir=tmp_path / "cache", out_dir=None, device="cpu")
    not_ok = [(c.key, c.status, c.reason) for c in results.cells if c.status != "ok"]
    assert not not_ok, not_ok
    assert len(results.cells) == 6
