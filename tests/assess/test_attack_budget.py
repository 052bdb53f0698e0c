"""Layer 2: the pgd cell keeps its L-inf budget on every built-in dataset with default parameters, reports the
largest perturbation it measured (``linf_perturbation``) and fails, rather than report a number, when its
examples left the budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from amulet.assess import load_spec, plan_assessment, run_assessment, run_cell
from amulet.assess._data import load_bundle
from amulet.evasion import _register as evasion_register
from amulet.evasion._register import PGDParams

#: (dataset, training rows, test rows): tiny real subsamples.
DATASETS = [("census", 600, 200), ("compas", 600, 200), ("german", 400, 200), ("mnist", 600, 200), ("fmnist", 600, 200)]


def _spec(name: str, training_size: int, test_size: int) -> dict[str, Any]:
    return {
        "name": f"pgd budget on {name}",
        "dataset": {"name": name, "training_size": training_size, "test_size": test_size},
        "model": {"architecture": "linearnet", "config": {"hidden_layer_sizes": [32, 16]}},
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.005},
        "risks": [{"risk": "evasion", "attack": "pgd"}],  # every PGD parameter at its default
        "seeds": [0],
    }


@pytest.mark.parametrize(("name", "training_size", "test_size"), DATASETS)
def test_pgd_cell_stays_within_epsilon_and_reports_it(tmp_path: Path, name, training_size, test_size):
    spec = _spec(name, training_size, test_size)
    bundle = load_bundle(load_spec(spec).dataset)
    assert bundle.clip_range == (0.0, 1.0), "every built-in dataset lies in [0, 1]"
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    (cell,) = [c for c in results.cells if c.attack == "pgd"]
    assert cell.status == "ok", cell.reason
    epsilon = PGDParams().epsilon
    measured = cell.metrics["linf_perturbation"]
    assert 0.5 * epsilon < measured <= epsilon + 1e-6, (name, measured)


class _LeakyPGD(evasion_register.EvasionPGD):
    """PGD whose examples leave the ball by 2 * epsilon: what a broken clip range or projection would do."""

    def attack(self):
        loader = super().attack()
        self.adversarial_examples_ = self.adversarial_examples_ + 2 * self.epsilon
        return loader


def test_a_pgd_cell_whose_examples_leave_the_budget_errors_instead_of_reporting(tmp_path: Path, monkeypatch):
    spec = load_spec(_spec("compas", 400, 100))
    plan = plan_assessment(spec)
    (cell,) = [c for c in plan.cells if c.attack == "pgd"]
    monkeypatch.setattr(evasion_register, "EvasionPGD", _LeakyPGD)
    result = run_cell(plan, cell.key, cache_dir=tmp_path / "cache", device="cpu")
    assert result.status == "error"
    assert not {"robust_accuracy", "attack_success_rate", "linf_perturbation"} & set(result.metrics)
    assert "AttackBudgetError" in result.reason and "more than epsilon=0.1" in result.reason


def test_linf_perturbation_is_the_largest_elementwise_change():
    x = torch.zeros(3, 1, 2, 2)
    x_adv = x.clone()
    x_adv[1, 0, 1, 0] = -0.25
    x_adv[2, 0, 0, 1] = 0.1
    assert evasion_register.linf_perturbation(x_adv, x) == 0.25
    evasion_register.check_linf_budget("pgd", 0.1 + 5e-7, 0.1)  # float32 rounding is tolerated
    with pytest.raises(
        evasion_register.AttackBudgetError, match=re.escape("up to 0.25 in L-inf, more than epsilon=0.1")
    ):
        evasion_register.check_linf_budget("pgd", 0.25, 0.1)
