"""What the registry records: risks, their headline metrics, attacks, defenses, metrics, and a cell's context."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from torch import nn

    from amulet.datasets import AmuletDataset
    from amulet.progress import Progress
    from amulet.recipes import Recipe, Stage
    from amulet.registry._outputs import AttackOutput
    from amulet.utils import TensorData

__all__ = [
    "AttackInfo",
    "CellContext",
    "DefenseInfo",
    "HeadlineMetric",
    "MetricInfo",
    "NoParams",
    "RiskInfo",
    "ThreatModel",
]


class NoParams(BaseModel):
    """Parameters model for modules that take none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class HeadlineMetric:
    """A metric a risk reports in every assessment cell.

    Attributes:
        key: Identifier within the risk (``"robust_accuracy"``); specs refer to ``<risk>.<key>``.
        name: Human name.
        higher_is_riskier: True when a higher value means the model is MORE susceptible to the risk.
        unit: ``"%"`` for percentages (0-100), ``""`` for fractions/ratios/other.
        description: One sentence.
        bounds: ``(low, high)``: the range every value of the metric lies in (e.g. ``(0, 1)`` for an AUC
            or a rate), so that reports keep its intervals inside it. ``None`` (default): ``(0, 100)``
            when ``unit`` is ``"%"``, unbounded otherwise (see :attr:`value_range`).
    """

    key: str
    name: str
    higher_is_riskier: bool
    unit: str = ""
    description: str = ""
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.bounds is not None:
            low, high = self.bounds
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"HeadlineMetric {self.key!r}: bounds must be two finite numbers (low, high) with low < high, "
                    f"got {self.bounds!r}."
                )

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The metric's range: ``bounds`` when given, ``(0, 100)`` for a ``"%"`` metric, else ``None``."""
        if self.bounds is not None:
            return (float(self.bounds[0]), float(self.bounds[1]))
        if self.unit == "%":
            return (0.0, 100.0)
        return None


@dataclass(frozen=True)
class RiskInfo:
    """A risk (the column of the interaction matrix)."""

    key: str
    code: str
    name: str
    category: Literal["security", "privacy", "fairness"]
    description: str
    headline_metrics: tuple[HeadlineMetric, ...]

    def metric(self, key: str) -> HeadlineMetric:
        """The headline metric called ``key``."""
        for m in self.headline_metrics:
            if m.key == key:
                return m
        raise KeyError(
            f"Risk {self.key!r} has no headline metric {key!r}; it has {[m.key for m in self.headline_metrics]}."
        )


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker knows and has (shown in reports next to every result)."""

    knowledge: str  # e.g. "white-box: weights and gradients" / "black-box: output probabilities"
    data: str  # e.g. "the adversary's own half of the data, disjoint from the training set"
    budget: str  # e.g. "L-inf epsilon per input, 40 PGD steps"
    goal: str = ""


@dataclass(frozen=True)
class AttackInfo:
    """An attack: how a risk is measured."""

    key: str
    code: str
    name: str
    risk: str
    cls: type | None
    params: type[BaseModel]
    threat_model: ThreatModel
    run: Callable[[CellContext, Any], dict[str, float] | AttackOutput]
    summary: str = ""
    reference: str = ""
    modalities: tuple[str, ...] = ("tabular", "image")


@dataclass(frozen=True)
class DefenseInfo:
    """A defense: a training-recipe stage (or a post-hoc verification procedure)."""

    key: str
    code: str
    name: str
    targets: tuple[str, ...]  # risk keys this defense is meant to lower (intended interactions)
    cls: type | None
    params: type[BaseModel]
    make_stage: Callable[[Any], Stage]
    summary: str = ""
    reference: str = ""
    modalities: tuple[str, ...] = ("tabular", "image")


@dataclass(frozen=True)
class MetricInfo:
    """A metric function of layer 1."""

    key: str
    name: str
    risk: str
    func: Callable[..., Any]
    summary: str = ""


@dataclass
class CellContext:
    """Everything an attack adapter needs to measure one (model, risk) cell.

    The interaction engine builds it; adapters read it and never mutate ``target``.

    Attributes:
        target: The trained model under assessment (baseline or defended), eval mode, on ``device``.
        model_factory: Returns a fresh, untrained instance of the target's architecture.
        recipe: How ``target`` was trained; attacks that must imitate training (shadow models,
            poisoning, populations) call ``recipe.train(model_factory, data, seed=..., ...)``.
        dataset: The whole dataset (metadata such as ``num_classes``, ``modality``, ``sensitive_columns``).
        member: Exactly the rows the target was trained on (x, y, z).
        adversary: Rows from the same distribution, disjoint from ``member``, that the attacker owns.
        test: Held-out rows for evaluation, disjoint from both.
        seed: Seed of this cell (derive sub-seeds with ``amulet.utils.derive_seed``).
        device: Torch device.
        cache_dir: Directory for content-addressed artifacts (shadow models...).
        progress: Progress reporter for this cell.
        defense_keys: Keys of the defenses in the target's recipe (empty for the baseline).
        input_shape: Shape of one input (e.g. (1, 28, 28) or (n_features,)).
        clip_range: (min, max) valid input values (e.g. (0, 1) for images).
        member_index: Row numbers of ``member`` in the assessment's training split (so that an attack can
            name the records it exposes); ``None`` when unknown.
    """

    target: nn.Module
    model_factory: Callable[[], nn.Module]
    recipe: Recipe
    dataset: AmuletDataset
    member: TensorData
    adversary: TensorData
    test: TensorData
    seed: int
    device: torch.device
    cache_dir: Any
    progress: Progress
    defense_keys: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    clip_range: tuple[float, float] | None = None
    member_index: Any = None  # numpy array of ints; Any keeps numpy out of this module's imports
    extras: dict[str, Any] = field(default_factory=dict)
