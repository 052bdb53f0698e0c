"""Registry entries of the poisoning risk (S2): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from amulet.exceptions import NotApplicableError
from amulet.poisoning.attacks import BadNets
from amulet.poisoning.defenses import OutlierRemoval, remove_low_value_points
from amulet.poisoning.metrics import backdoor_success_rate
from amulet.recipes import DataStage
from amulet.registry import (
    AttackInfo,
    DefenseInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    ThreatModel,
    derived_from,
    register_attack,
    register_defense,
    register_metric,
    register_risk,
)
from amulet.utils import TensorData, derive_seed, get_accuracy

if TYPE_CHECKING:
    from amulet.registry import CellContext

RISK = register_risk(
    RiskInfo(
        key="poisoning",
        code="S2",
        name="Poisoning",
        category="security",
        description="Backdoors planted by manipulating part of the training data.",
        headline_metrics=(
            HeadlineMetric(
                key="attack_success_rate",
                name="Backdoor success rate",
                higher_is_riskier=True,
                unit="%",
                description="Triggered test inputs classified as the attacker's label.",
            ),
            HeadlineMetric(
                key="clean_accuracy",
                name="Clean accuracy of the poisoned model",
                higher_is_riskier=False,
                unit="%",
                description="Accuracy of the poisoned model on clean test data.",
            ),
        ),
    )
)


@derived_from(
    BadNets,
    overrides={
        "trigger_value": "None: the adapter picks the end of the valid range the trigger is written with "
        "(see the field's description); layer 1's 0.0 can be a value the clean model already obeys."
    },
    adapted={"trigger_value": "None becomes one end of the data's clip range before BadNets gets it."},
)
class BadNetsParams(BaseModel):
    """Parameters of the ``badnets`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    trigger_label: int = Field(default=0, ge=0, le=100_000, description="Label the backdoor maps triggered inputs to.")
    portion: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Share of all training rows that are poisoned (chosen among the non-trigger-label rows).",
    )
    trigger_value: float | None = Field(
        default=None,
        description=(
            "Value written into the trigger; None picks, for tabular data, the end of the valid range that the "
            "unpoisoned model maps to the trigger label least often on the adversary's rows (a trigger the clean "
            "model already obeys would measure nothing) and, for images, whichever end of the valid range is "
            "farther from the mean of the trigger region (a visible trigger)."
        ),
    )


def _trigger_rate(ctx: CellContext, attack: BadNets, rows: TensorData) -> float:
    """Percent of ``rows`` (triggered by ``attack``) that the row's unpoisoned model gives the trigger label."""
    triggered = attack.poison_test(rows)
    return backdoor_success_rate(ctx.target, TensorData(*triggered.tensors).loader(1024), ctx.device)


def _auto_trigger_value(ctx: CellContext, dataset_type: str, make_attack: Callable[[float], BadNets]) -> float:
    low, high = ctx.clip_range if ctx.clip_range is not None else (0.0, 1.0)
    if dataset_type == "tabular":
        # Zeroing census' numeric block (its last fifth) already makes any model predict "<=50K": a trigger the
        # clean model obeys by itself would report a 100 % backdoor on every row. Pick the end it obeys least.
        rates = {value: _trigger_rate(ctx, make_attack(value), ctx.adversary) for value in (float(low), float(high))}
        return min(rates, key=lambda value: rates[value])
    x = ctx.member.x
    h, w = x.shape[-2], x.shape[-1]
    region_mean = float(x[..., h - 3 : h - 1, w - 3 : w - 1].float().mean())
    return float(high) if abs(high - region_mean) >= abs(region_mean - low) else float(low)


def run_badnets(ctx: CellContext, params: BadNetsParams) -> dict[str, float]:
    """Layer-2 adapter: train with the target's recipe on BadNets-poisoned training rows.

    Returns ``attack_success_rate`` (percent of triggered non-target-label test rows classified as the
    trigger label), ``clean_accuracy`` (percent, clean test rows), ``n_poisoned`` and
    ``unpoisoned_trigger_rate`` (the same success rate measured on the row's own, unpoisoned model: what the
    trigger achieves without any poisoning, the floor the headline rate must be read against).

    Raises:
        NotApplicableError: for text data, a trigger label outside the classes, or too-small images.
    """
    modality = ctx.dataset.modality
    if modality == "text":
        raise NotApplicableError("BadNets here stamps image or tabular triggers; it does not apply to text.")
    if params.trigger_label >= ctx.dataset.num_classes:
        raise NotApplicableError(
            f"The trigger label {params.trigger_label} is not a class of this dataset "
            f"({ctx.dataset.num_classes} classes)."
        )
    dataset_type = "image" if modality == "image" else "tabular"
    if dataset_type == "image" and (ctx.member.x.dim() < 3 or min(ctx.member.x.shape[-2:]) < 3):
        raise NotApplicableError("The BadNets image trigger needs images of at least 3x3 pixels.")

    def make_attack(value: float) -> BadNets:
        return BadNets(
            params.trigger_label,
            params.portion,
            derive_seed(ctx.seed, "badnets") % (2**62),
            dataset_type,
            trigger_value=value,
        )

    value = params.trigger_value
    if value is None:
        value = _auto_trigger_value(ctx, dataset_type, make_attack)
    attack = make_attack(value)
    poisoned = attack.poison_train(ctx.member)
    x_poisoned, y_poisoned = poisoned.tensors
    model = ctx.recipe.train(
        ctx.model_factory,
        # same rows in the same order: the sensitive attributes stay aligned (defenses such as debiasing use them)
        TensorData(x_poisoned, y_poisoned, ctx.member.z),
        seed=derive_seed(ctx.seed, "badnets", "train"),
        device=ctx.device,
        progress=ctx.progress,
    )
    triggered = attack.poison_test(ctx.test)
    return {
        "attack_success_rate": backdoor_success_rate(model, TensorData(*triggered.tensors).loader(1024), ctx.device),
        "clean_accuracy": get_accuracy(model, ctx.test.loader(1024), ctx.device),
        "n_poisoned": float(len(attack.poisoned_indices_)),
        "unpoisoned_trigger_rate": _trigger_rate(ctx, attack, ctx.test),
    }


register_attack(
    AttackInfo(
        key="badnets",
        code="S2",
        name="BadNets backdoor",
        risk="poisoning",
        cls=BadNets,
        params=BadNetsParams,
        threat_model=ThreatModel(
            knowledge="none of the model; the attacker controls part of the training data",
            data="a portion of the target's training rows, which the attacker triggers and relabels",
            budget="portion of poisoned rows; a fixed 2x2 pixel (image) or last-fifth-of-features (tabular) trigger",
            goal="triggered inputs are classified as the attacker's label while clean accuracy is kept",
        ),
        run=run_badnets,
        summary="Stamp a fixed trigger on a seeded portion of the training rows, relabel them, train with the recipe.",
        reference="T. Gu et al. BadNets: Evaluating Backdooring Attacks on Deep Neural Networks. IEEE Access 2019.",
    )
)


@derived_from(OutlierRemoval)
class OutlierRemovalParams(BaseModel):
    """Parameters of the ``outlier_removal`` defense."""

    model_config = ConfigDict(extra="forbid")

    percent: float = Field(default=10.0, ge=0, lt=100, description="Percent of training rows removed (lowest value).")
    k: int = Field(default=5, ge=1, le=1000, description="Neighbours of the KNN-Shapley valuation.")


def make_outlier_removal_stage(params: OutlierRemovalParams) -> DataStage:
    """A data stage: train with the recipe's config, value rows by KNN-Shapley, drop the lowest ``percent``."""

    def apply(model_factory: Any, data: Any, *, config: Any, seed: int, device: Any, progress: Any) -> Any:
        return remove_low_value_points(
            model_factory,
            data,
            config=config,
            seed=seed,
            device=device,
            progress=progress,
            percent=params.percent,
            k=params.k,
        )

    return DataStage(defense="outlier_removal", params=params.model_dump(), apply=apply)


register_defense(
    DefenseInfo(
        key="outlier_removal",
        code="SD2",
        name="Outlier removal (KNN-Shapley)",
        targets=("poisoning",),
        cls=OutlierRemoval,
        params=OutlierRemovalParams,
        make_stage=make_outlier_removal_stage,
        summary=(
            "A model trained on the data gives penultimate features; exact KNN-Shapley values each half of the rows "
            "against the other; the lowest-valued percent is removed before training."
        ),
        reference="R. Jia et al. Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms. VLDB 2019.",
    )
)

register_metric(
    MetricInfo(
        key="backdoor_success_rate",
        name="Backdoor success rate",
        risk="poisoning",
        func=backdoor_success_rate,
        summary="Percent of triggered inputs classified as the attacker's label.",
    )
)
