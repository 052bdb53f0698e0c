"""Fixtures of the interaction-engine tests: tiny census specs, test-only registrations, one shared real run.

Test-only attacks/defenses are real small functions over real models, registered with ``force=True`` and
removed afterwards, so they never leak into the registry tests.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from amulet import registry
from amulet.exceptions import NotApplicableError
from amulet.recipes import PostStage
from amulet.registry import AttackInfo, CellContext, DefenseInfo, ThreatModel

#: A census spec small enough that a training takes well under a second on 2 CPU cores.
TINY: dict[str, Any] = {
    "name": "tiny census",
    "dataset": {"name": "census", "training_size": 1000, "test_size": 500},
    "model": {"architecture": "linearnet", "config": {"hidden_layer_sizes": [32, 16]}},
    # Enough training that every seed's model is clearly above the majority rate (not degenerate).
    "training": {"epochs": 5, "batch_size": 64, "lr": 0.01},
    "seeds": [0, 1],
}


def tiny_spec(**overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`TINY` with top-level fields replaced."""
    spec = copy.deepcopy(TINY)
    spec.update(copy.deepcopy(overrides))
    return spec


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShrinkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: float = Field(default=0.1, gt=0, le=1, description="Scale of the last layer's weights.")


def _loss_threshold(ctx: CellContext, params: _NoParams) -> dict[str, float]:
    """Loss-threshold membership inference (Yeom et al. 2018): members have lower loss than non-members."""
    from sklearn.metrics import roc_auc_score, roc_curve

    n = min(len(ctx.member), len(ctx.test), 400)
    rows = torch.cat([ctx.member.x[:n], ctx.test.x[:n]]).to(ctx.device)
    labels = torch.cat([ctx.member.y[:n], ctx.test.y[:n]]).to(ctx.device)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(ctx.target(rows), labels, reduction="none").cpu().numpy()
    truth = np.r_[np.ones(n), np.zeros(n)]
    score = -loss
    fpr, tpr, _ = roc_curve(truth, score)
    return {
        "auc": float(roc_auc_score(truth, score)),
        "tpr_at_fpr": float(np.interp(0.01, fpr, tpr)),
        "balanced_acc": float(np.max((tpr + 1 - fpr) / 2)),
    }


def _image_only(ctx: CellContext, params: _NoParams) -> dict[str, float]:
    if ctx.dataset.modality != "image":
        raise NotApplicableError(f"this attack needs image data; {ctx.dataset.name} is {ctx.dataset.modality}")
    return {"similarity": 1.0, "mse": 0.0}


def _broken(ctx: CellContext, params: _NoParams) -> dict[str, float]:
    raise RuntimeError("boom: the test attack always fails")


def _nan_metrics(ctx: CellContext, params: _NoParams) -> dict[str, float]:
    return {"distinguishing_accuracy": math.nan, "auc": math.nan}


def _shrink_stage(params: ShrinkParams) -> PostStage:
    def apply(model, data, *, config, seed, device, progress):
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(params.factor)
            last.bias.mul_(params.factor)
        return model

    return PostStage("t_shrink", params.model_dump(), apply=apply)


def _constant_stage(params: _NoParams) -> PostStage:
    """A real, deliberately broken defense: the last layer is zeroed and biased, so every prediction is class 0."""

    def apply(model, data, *, config, seed, device, progress):
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
            last.bias[0] = 5.0
        return model

    return PostStage("t_constant", {}, apply=apply)


_TM = ThreatModel(knowledge="black-box: losses", data="member and test rows", budget="one query per row")

TEST_ATTACKS = [
    AttackInfo("t_loss_threshold", "P1", "Loss threshold (test)", "membership_inference", None, _NoParams, _TM,
               _loss_threshold),
    AttackInfo("t_image_only", "P3", "Image-only (test)", "data_reconstruction", None, _NoParams, _TM, _image_only),
    AttackInfo("t_broken", "S2", "Always fails (test)", "poisoning", None, _NoParams, _TM, _broken),
    AttackInfo("t_nan", "P4", "Measures nothing (test)", "distribution_inference", None, _NoParams, _TM, _nan_metrics),
]  # fmt: skip
TEST_DEFENSES = [
    DefenseInfo("t_shrink", "T1", "Shrink logits (test)", ("membership_inference",), None, ShrinkParams, _shrink_stage),
    DefenseInfo("t_constant", "T2", "Constant model (test)", ("evasion",), None, _NoParams, _constant_stage),
]


@pytest.fixture
def test_registrations() -> Iterator[None]:
    """Register the test-only attacks and defenses; remove them (restoring anything replaced) afterwards."""
    with _registered():
        yield


class _registered:  # noqa: N801 - used as a context manager
    def __enter__(self) -> None:
        registry.load_builtins()
        self.saved_attacks = {a.key: registry._ATTACKS.get(a.key) for a in TEST_ATTACKS}
        self.saved_defenses = {d.key: registry._DEFENSES.get(d.key) for d in TEST_DEFENSES}
        for a in TEST_ATTACKS:
            registry.register_attack(a, force=True)
        for d in TEST_DEFENSES:
            registry.register_defense(d, force=True)

    def __exit__(self, *exc: object) -> None:
        for table, saved in ((registry._ATTACKS, self.saved_attacks), (registry._DEFENSES, self.saved_defenses)):
            for key, old in saved.items():
                if old is None:
                    table.pop(key, None)
                else:
                    table[key] = old


@pytest.fixture(scope="session")
def assess_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session (tests that count trainings use their own)."""
    return tmp_path_factory.mktemp("assess-cache")


#: The shared real run (3 seeds): real modules (PGD, adversarial training that keeps utility and makes the
#: model significantly more robust, subgroup metrics), a deliberately degenerate (constant) row, and test-only
#: cells that are not applicable, fail, and measure nothing, with checks that pass, fail, cannot run, and are
#: inconclusive because their row's model is degenerate.
SHARED_SPEC = tiny_spec(
    name="shared tiny run",
    seeds=[0, 1, 2],
    defenses=[
        {"defense": "adversarial_training", "params": {"epsilon": 0.01, "iterations": 3}},
        {"defense": "t_constant"},
    ],
    risks=[
        {"risk": "evasion", "attack": "pgd", "params": {"iterations": 5, "max_samples": 300, "epsilon": 0.05}},
        {"risk": "discriminatory_behavior", "attack": "subgroup_metrics"},
        {"risk": "data_reconstruction", "attack": "t_image_only"},
        {"risk": "poisoning", "attack": "t_broken"},
    ],
    policy=[
        {"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 1, "row": "baseline", "id": "robust-pass"},
        {"metric": "evasion.robust_accuracy", "op": "<=", "threshold": 1, "row": "baseline", "id": "robust-fail"},
        {"metric": "data_reconstruction.mse", "op": ">=", "threshold": 0.1, "id": "recon-not-run"},
        {"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 0, "row": "t_constant", "id": "constant"},
    ],
)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory: pytest.TempPathFactory, assess_cache: Path) -> dict[str, Any]:
    """Run :data:`SHARED_SPEC` once (2 seeds) and render every report format; returns results and paths."""
    from amulet.assess import load_spec, render_reports, run_assessment

    with _registered():
        spec = load_spec(SHARED_SPEC)
        results = run_assessment(spec, cache_dir=assess_cache, device="cpu")
        out = tmp_path_factory.mktemp("shared-report")
        paths = render_reports(results, out)
    return {"spec": spec, "results": results, "paths": paths, "out": out}
