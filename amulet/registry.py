"""The one registry of risks, attacks, defenses and metrics.

Everything that lists what Amulet can do reads this module: assessment specs (which names and parameters
are valid), the REST catalog, the dashboard's forms and the CLI's help. Each risk package registers its
own modules in its ``_register.py`` file; adding a module means writing it and adding one
``register_attack``/``register_defense``/``register_metric`` call there.

Entries carry:
  * ``key`` (stable identifier used in specs), ``code`` (S1, SD1, P1... from the SoK), human ``name``;
  * ``params``: a pydantic model of the parameters an assessment may set, with types, defaults, bounds and
    help text (its JSON Schema is what the API and the dashboard show);
  * for risks, the headline metrics with their direction (does a higher value mean more susceptible?);
  * for attacks, the threat model (attacker knowledge, data, budget) and ``run``: the layer-2 adapter
    ``run(ctx: CellContext, params) -> dict[metric_key, float]`` (or an :class:`AttackOutput` when the attack
    also yields a ROC curve or per-record scores);
  * for defenses, ``make_stage(params) -> Stage``: the training-recipe stage it contributes
    (see :mod:`amulet.recipes`).

Example:
    >>> from amulet import registry
    >>> sorted(r.code for r in registry.risks())[:3]
    ['F', 'P1', 'P2']
"""

from __future__ import annotations

import importlib
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
    from amulet.utils import TensorData

__all__ = [
    "AttackInfo",
    "AttackOutput",
    "CellContext",
    "DefenseInfo",
    "HeadlineMetric",
    "MetricInfo",
    "NoParams",
    "RiskInfo",
    "RocCurve",
    "ThreatModel",
    "VulnerableRecord",
    "attacks",
    "catalog",
    "defenses",
    "get_attack",
    "get_defense",
    "get_risk",
    "metrics",
    "register_attack",
    "register_defense",
    "register_metric",
    "register_risk",
    "risks",
]

#: The risk packages whose ``_register`` modules are imported when the registry is first read.
BUILTIN_RISK_PACKAGES = (
    "amulet.evasion",
    "amulet.poisoning",
    "amulet.unauth_model_ownership",
    "amulet.membership_inference",
    "amulet.attribute_inference",
    "amulet.distribution_inference",
    "amulet.data_reconstruction",
    "amulet.discriminatory_behavior",
)


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


class RocCurve(BaseModel):
    """A ROC curve, thinned for plotting: false-positive rates ascending, with their true-positive rates.

    Attributes:
        fpr: False-positive rates in [0, 1], ascending; the first is the smallest non-zero rate measured.
        tpr: True-positive rate at each ``fpr``.
        n_positive: Number of positive candidates (members) the curve was measured on.
        n_negative: Number of negative candidates (non-members); ``1 / n_negative`` is the smallest
            false-positive rate the curve can resolve.
    """

    model_config = ConfigDict(extra="forbid")

    fpr: list[float]
    tpr: list[float]
    n_positive: int
    n_negative: int


class VulnerableRecord(BaseModel):
    """A training record that an attack singled out: one of the highest-scoring members.

    Attributes:
        record: The record's row number (0-based) in the assessment's training split (the rows the
            member/adversary split is drawn from; see ``docs/reports.md``).
        label: The record's class label.
        score: The attack's membership score for it (higher = more confidently a member).
        rank: Its rank among every candidate the attack scored, members and non-members (1 = highest).
    """

    model_config = ConfigDict(extra="forbid")

    record: int
    label: int
    score: float
    rank: int


class AttackOutput(BaseModel):
    """What an attack adapter may return instead of a plain ``dict`` of metrics.

    Attributes:
        metrics: Metric key -> value, as a plain adapter returns.
        roc: The ROC curve of the attack's scores (membership-style attacks).
        vulnerable_records: The most exposed training records, highest score first.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, float]
    roc: RocCurve | None = None
    vulnerable_records: list[VulnerableRecord] = []


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


_RISKS: dict[str, RiskInfo] = {}
_ATTACKS: dict[str, AttackInfo] = {}
_DEFENSES: dict[str, DefenseInfo] = {}
_METRICS: dict[str, MetricInfo] = {}
_LOADED = False


def _store(table: dict[str, Any], kind: str, key: str, value: Any, force: bool) -> Any:
    if key in table and not force and table[key] != value:
        raise ValueError(f"A {kind} called {key!r} is already registered; pass force=True to replace it.")
    table[key] = value
    return value


def register_risk(info: RiskInfo, *, force: bool = False) -> RiskInfo:
    """Add a risk (a column of the interaction matrix)."""
    return _store(_RISKS, "risk", info.key, info, force)


def register_attack(info: AttackInfo, *, force: bool = False) -> AttackInfo:
    """Add an attack; its ``risk`` must be registered first."""
    if info.risk not in _RISKS:
        raise ValueError(f"Attack {info.key!r} names the unknown risk {info.risk!r}; register the risk first.")
    return _store(_ATTACKS, "attack", info.key, info, force)


def register_defense(info: DefenseInfo, *, force: bool = False) -> DefenseInfo:
    """Add a defense."""
    return _store(_DEFENSES, "defense", info.key, info, force)


def register_metric(info: MetricInfo, *, force: bool = False) -> MetricInfo:
    """Add a layer-1 metric function."""
    return _store(_METRICS, "metric", info.key, info, force)


def load_builtins() -> None:
    """Import every built-in risk package's ``_register`` module (idempotent)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for package in BUILTIN_RISK_PACKAGES:
        try:
            importlib.import_module(package + "._register")
        except ModuleNotFoundError as exc:
            if exc.name != package + "._register":
                raise


def risks() -> list[RiskInfo]:
    """All registered risks, in registration order."""
    load_builtins()
    return list(_RISKS.values())


def attacks(risk: str | None = None) -> list[AttackInfo]:
    """All registered attacks (of one risk when given)."""
    load_builtins()
    return [a for a in _ATTACKS.values() if risk is None or a.risk == risk]


def defenses() -> list[DefenseInfo]:
    """All registered defenses."""
    load_builtins()
    return list(_DEFENSES.values())


def metrics(risk: str | None = None) -> list[MetricInfo]:
    """All registered layer-1 metric functions (of one risk when given)."""
    load_builtins()
    return [m for m in _METRICS.values() if risk is None or m.risk == risk]


def _lookup(table: dict[str, Any], kind: str, key: str) -> Any:
    load_builtins()
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"Unknown {kind} {key!r}. Registered {kind}s: {sorted(table)}.") from None


def get_risk(key: str) -> RiskInfo:
    """The risk registered as ``key`` (KeyError listing the known keys otherwise)."""
    return _lookup(_RISKS, "risk", key)


def get_attack(key: str) -> AttackInfo:
    """The attack registered as ``key``."""
    return _lookup(_ATTACKS, "attack", key)


def get_defense(key: str) -> DefenseInfo:
    """The defense registered as ``key``."""
    return _lookup(_DEFENSES, "defense", key)


def catalog() -> dict[str, Any]:
    """A JSON-serialisable description of everything registered (the REST ``/catalog``)."""
    load_builtins()

    def metric_dict(m: HeadlineMetric) -> dict[str, Any]:
        return {
            "key": m.key,
            "name": m.name,
            "higher_is_riskier": m.higher_is_riskier,
            "unit": m.unit,
            "description": m.description,
            "bounds": list(m.value_range) if m.value_range else None,
        }

    return {
        "risks": [
            {
                "key": r.key,
                "code": r.code,
                "name": r.name,
                "category": r.category,
                "description": r.description,
                "headline_metrics": [metric_dict(m) for m in r.headline_metrics],
                "attacks": [a.key for a in attacks(r.key)],
            }
            for r in _RISKS.values()
        ],
        "attacks": [
            {
                "key": a.key,
                "code": a.code,
                "name": a.name,
                "risk": a.risk,
                "summary": a.summary,
                "reference": a.reference,
                "modalities": list(a.modalities),
                "threat_model": vars(a.threat_model),
                "params_schema": a.params.model_json_schema(),
            }
            for a in _ATTACKS.values()
        ],
        "defenses": [
            {
                "key": d.key,
                "code": d.code,
                "name": d.name,
                "targets": list(d.targets),
                "summary": d.summary,
                "reference": d.reference,
                "modalities": list(d.modalities),
                "params_schema": d.params.model_json_schema(),
            }
            for d in _DEFENSES.values()
        ],
        "metrics": [{"key": m.key, "name": m.name, "risk": m.risk, "summary": m.summary} for m in _METRICS.values()],
    }
