"""How strong each attack was: its budget as run (shadows, models, steps, queries), and whether it is weak.

A result means little without the attack's strength next to it: LiRA with 4 shadow models reads an AUC of
about 0.5 whatever the defense, and distribution inference with 2 victim models per ratio can only score
0, 0.25, ..., 1. :func:`attack_strength` derives the budget of one cell from the parameters it ran with
(the attack's validated parameters, defaults filled, exactly as the runner builds them) and from the counts
the attack itself reported (``n_candidates``, ``n_victim_models``, ``n_queries``, ``n_poisoned``), never from
the spec's text. It flags a budget below :data:`WEAK_BUDGETS` as weak: such a cell is shown with
:data:`WEAK_NOTE` and is not counted as a finding.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from amulet import registry
from amulet.evasion._register import madry_step_size

__all__ = ["WEAK_BUDGETS", "WEAK_NOTE", "AttackStrength", "attack_strength", "strength_text"]

#: What every weak budget's note starts with.
WEAK_NOTE = "weak budget: the result cannot resolve small effects"

_TARGETS = "fewer than 8 target (victim) models per ratio give a coarse accuracy"

#: attack -> (budget item, the parameter that sets it, smallest value that is not weak, why below it is weak).
#: LiRA fits per-record IN/OUT Gaussians from its shadows (Carlini et al. 2022 use 64 and more; with few
#: shadows the per-record estimates are noisy); distribution inference's accuracy over n victim models per
#: ratio moves in steps of 1 / (2n), and its adversary needs enough models per ratio to place a threshold.
#: Other attacks show their budget without a floor: no rule of thumb separates a weak one from a strong one.
WEAK_BUDGETS: dict[str, list[tuple[str, str, int, str]]] = {
    "lira": [
        (
            "shadow_models",
            "num_shadow",
            16,
            "LiRA's per-record IN/OUT fits need at least 16 shadow models; the examples use 64",
        )
    ],
    "suri_evans_2022": [
        ("target_models_per_ratio", "num_victim_models", 8, _TARGETS),
        (
            "adversary_models_per_ratio",
            "num_models",
            8,
            "fewer than 8 adversary models per ratio give a noisy decision rule",
        ),
    ],
    "whitebox_pim": [
        ("target_models_per_ratio", "num_victim_models", 8, _TARGETS),
        (
            "adversary_models_per_ratio",
            "num_models",
            8,
            "fewer than 8 adversary models per ratio train a weak meta-classifier",
        ),
    ],
}


class AttackStrength(BaseModel):
    """The budget one cell's attack ran with.

    Attributes:
        summary: One line for tables (``"64 shadow models (online), 5,000 candidates"``).
        budget: Budget item -> value, machine-readable (``{"shadow_models": 64, "scores": "online", ...}``).
        weak: True when an item is below its :data:`WEAK_BUDGETS` threshold.
        note: Why the budget is weak (starts with :data:`WEAK_NOTE`); empty otherwise.
        raise_to: For a weak budget: parameter -> the smallest value that is not weak.
    """

    summary: str
    budget: dict[str, int | float | str | bool | None] = Field(default_factory=dict)
    weak: bool = False
    note: str = ""
    raise_to: dict[str, int] = Field(default_factory=dict)


def _count(metrics: Mapping[str, float], key: str) -> int | None:
    value = metrics.get(key)
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _lira(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    shadows = int(p.get("num_shadow", 0))
    candidates = _count(m, "n_candidates")
    inside = round(float(p.get("pkeep", 0.5)) * shadows)
    budget = {
        "shadow_models": shadows,
        "scores": p.get("scores"),
        "shadows_in_per_record": inside,
        "candidates": candidates,
        "fix_variance": p.get("fix_variance"),
    }
    text = (
        f"{shadows} shadow models ({p.get('scores')}; each record IN for {inside}, OUT for {shadows - inside}), "
        f"{_n(candidates)} candidates"
    )
    return budget, text


def _distribution(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    victims = _count(m, "n_victim_models")
    per_ratio = int(p.get("num_victim_models", 0)) if victims is None else victims // 2
    budget: dict[str, Any] = {
        "target_models_per_ratio": per_ratio,
        "adversary_models_per_ratio": int(p.get("num_models", 0)),
        "ratios": f"{p.get('ratio1')} vs {p.get('ratio2')}",
        "rows_per_model": p.get("train_subsample"),
    }
    text = (
        f"{per_ratio} target + {budget['adversary_models_per_ratio']} adversary models per ratio "
        f"({budget['ratios']} {p.get('property')}), {_n(p.get('train_subsample'))} rows each"
    )
    if "meta_epochs" in p:
        budget["meta_epochs"] = p["meta_epochs"]
        text += f", {p['meta_epochs']} meta-classifier steps"
    return budget, text


def _pgd(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    epsilon, steps = float(p.get("epsilon", 0.0)), int(p.get("iterations", 0))
    step = madry_step_size(epsilon, steps, p.get("step_size"))
    budget = {
        "steps": steps,
        "epsilon": epsilon,
        "step_size": step,
        "step_rule": "given" if p.get("step_size") is not None else "2.5 * epsilon / steps",
        "max_rows": p.get("max_samples"),
    }
    text = f"{steps} steps, L-inf epsilon {epsilon:g}, step size {step:.3g}, up to {_n(p.get('max_samples'))} test rows"
    return budget, text


def _extraction(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    queries = _count(m, "n_queries")
    budget = {
        "queries": queries,
        "query_budget": p.get("query_budget"),
        "epochs": p.get("epochs"),
        "loss": p.get("loss_type"),
    }
    return budget, f"{_n(queries)} queries, surrogate trained {p.get('epochs')} epochs ({p.get('loss_type')} loss)"


def _hidden_layers(attack: str) -> tuple[int, ...] | None:
    """The attack class's default hidden layer widths (the assessment does not override them)."""
    try:
        cls = registry.get_attack(attack).cls
        parameter = None if cls is None else inspect.signature(cls).parameters.get("hidden_layer_sizes")
    except (KeyError, TypeError, ValueError):
        return None
    default = None if parameter is None else parameter.default
    return tuple(int(w) for w in default) if isinstance(default, (tuple, list)) else None


def _attribute(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    layers = _hidden_layers("duddu_cikm_2022")
    shape = "-".join(map(str, layers)) if layers else "default"
    budget = {
        "attack_model": f"MLP {shape}",
        "max_epochs": p.get("max_iter"),
        "max_adversary_rows": p.get("max_adversary_rows"),
    }
    text = f"attack MLP {shape}, up to {p.get('max_iter')} epochs on up to {_n(p.get('max_adversary_rows'))} rows"
    return budget, text


def _badnets(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    poisoned = _count(m, "n_poisoned")
    budget = {"poisoned_rows": poisoned, "portion": p.get("portion"), "trigger_label": p.get("trigger_label")}
    return budget, f"{_n(poisoned)} poisoned rows (portion {p.get('portion')}), trigger label {p.get('trigger_label')}"


def _inversion(p: Mapping[str, Any], m: Mapping[str, float]) -> tuple[dict[str, Any], str]:
    budget = {"max_steps_per_class": p.get("alpha"), "patience": p.get("beta")}
    return budget, f"up to {p.get('alpha')} gradient steps per class (patience {p.get('beta')})"


_DESCRIBE: dict[str, Callable[[Mapping[str, Any], Mapping[str, float]], tuple[dict[str, Any], str]]] = {
    "lira": _lira,
    "suri_evans_2022": _distribution,
    "whitebox_pim": _distribution,
    "pgd": _pgd,
    "model_extraction": _extraction,
    "duddu_cikm_2022": _attribute,
    "badnets": _badnets,
    "fredrikson_ccs_2015": _inversion,
}


def _scalar(value: Any) -> float | int | str | bool | None:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def attack_strength(attack: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> AttackStrength | None:
    """The budget of one cell, from the parameters it ran with and the counts it reported.

    Args:
        attack: The attack's registry key.
        params: The attack's parameters as run (validated, defaults filled).
        metrics: The cell's metrics (counts such as ``n_candidates`` or ``n_queries`` come from here).

    Returns:
        An :class:`AttackStrength`; ``None`` for an attack without parameters (a measurement such as
        ``subgroup_metrics`` has no budget). An attack this module does not know is described by its
        parameters, never flagged weak.

    Example:
        >>> s = attack_strength("lira", {"num_shadow": 4, "scores": "online", "pkeep": 0.5}, {"n_candidates": 600})
        >>> s.summary, s.weak
        ('4 shadow models (online; each record IN for 2, OUT for 2), 600 candidates', True)
    """
    describe = _DESCRIBE.get(attack)
    if describe is None:
        if not params:
            return None
        budget = {k: _scalar(v) for k, v in params.items()}
        return AttackStrength(summary=", ".join(f"{k} {v}" for k, v in budget.items()), budget=budget)
    budget, summary = describe(params, metrics)
    reasons, raise_to = [], {}
    for item, parameter, floor, why in WEAK_BUDGETS.get(attack, []):
        value = budget.get(item)
        if isinstance(value, (int, float)) and value < floor:
            reasons.append(why)
            raise_to[parameter] = floor
    return AttackStrength(
        summary=summary,
        budget={k: _scalar(v) for k, v in budget.items()},
        weak=bool(reasons),
        note=f"{WEAK_NOTE} ({'; '.join(reasons)})" if reasons else "",
        raise_to=raise_to,
    )


def strength_text(strength: AttackStrength | None, *, note: bool = True) -> str:
    """``summary`` with the weak-budget note appended (``"-"`` when there is no budget)."""
    if strength is None:
        return "-"
    return strength.summary + (f"; {strength.note}" if note and strength.weak else "")
