"""Registry entries of the distribution inference risk (P4): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from amulet.distribution_inference.attacks import SuriEvans2022, WhiteBoxPIM
from amulet.distribution_inference.attacks._splits import _tensor_dataset, ratio_indices, sample_with_ratio
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.exceptions import InvalidParameterError, NotApplicableError
from amulet.registry import (
    AttackInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    ThreatModel,
    derived_from,
    register_attack,
    register_metric,
    register_risk,
)
from amulet.utils import TensorData, derive_seed, numpy_rng

if TYPE_CHECKING:
    from amulet.registry import CellContext

RISK = register_risk(
    RiskInfo(
        key="distribution_inference",
        code="P4",
        name="Distribution inference",
        category="privacy",
        description="Inferring properties of the training distribution (e.g. the share of one sex).",
        headline_metrics=(
            HeadlineMetric(
                key="distinguishing_accuracy",
                name="Distinguishing accuracy",
                higher_is_riskier=True,
                unit="",
                description="Share of victim models whose training distribution (ratio1 or ratio2) the attack "
                "names correctly, deciding at a threshold chosen on the adversary's own models; 0.5 = chance, "
                "higher = more susceptible.",
                bounds=(0.0, 1.0),
            ),
            HeadlineMetric(
                key="auc",
                name="Distinguishing AUC",
                higher_is_riskier=True,
                unit="",
                description="ROC AUC of the attack's scores of the victim models (threshold-free); 0.5 = chance, "
                "higher = more susceptible.",
                bounds=(0.0, 1.0),
            ),
        ),
    )
)


@derived_from(
    SuriEvans2022,
    overrides={
        "train_subsample": "800 training rows per model instead of layer 1's 1100 (upstream's census value): "
        "every row of the matrix trains 2 * (num_models + num_victim_models) models.",
        "test_subsample": "400 query rows per distribution instead of layer 1's 500, for the same reason.",
    },
    renamed={"property": "filter_column", "property_value": "filter_value"},
    engine_only={"num_victim_models": "Victim models per distribution the adapter trains with the row's recipe."},
)
class DistributionInferenceParams(BaseModel):
    """Parameters of the distribution inference attacks in an assessment."""

    model_config = ConfigDict(extra="forbid")

    property: str = Field(default="sex", min_length=1, description="Sensitive column whose share is inferred.")
    property_value: int = Field(default=1, description="Value of the column that has the property.")
    ratio1: float = Field(default=0.2, ge=0, le=1, description="Share of rows with the property in distribution 1.")
    ratio2: float = Field(default=0.8, ge=0, le=1, description="Share of rows with the property in distribution 2.")
    num_models: int = Field(default=8, ge=2, le=512, description="Adversary models per distribution.")
    num_victim_models: int = Field(default=4, ge=1, le=512, description="Victim models per distribution.")
    train_subsample: int = Field(default=800, ge=10, le=1_000_000, description="Training rows of each model.")
    test_subsample: int = Field(default=400, ge=10, le=1_000_000, description="Query rows per distribution.")


@derived_from(
    WhiteBoxPIM,
    overrides={
        "train_subsample": "800 training rows per model instead of layer 1's 1100 (see suri_evans_2022).",
        "test_subsample": "400 query rows per distribution instead of layer 1's 500 (see suri_evans_2022).",
    },
    renamed={"property": "filter_column", "property_value": "filter_value"},
    engine_only={"num_victim_models": "Victim models per distribution the adapter trains with the row's recipe."},
)
class WhiteBoxPIMParams(DistributionInferenceParams):
    """Parameters of ``whitebox_pim``."""

    meta_epochs: int = Field(default=100, ge=1, le=10_000, description="Training steps of the meta-classifier.")
    lr: float = Field(default=0.01, gt=0, le=10, description="Learning rate of the meta-classifier.")


def _run(ctx: CellContext, params: DistributionInferenceParams, cls: type) -> dict[str, float]:
    """Shared adapter: populations trained with ``ctx.recipe`` on ratio-controlled draws.

    Victim models are trained on draws from ``ctx.member`` (the target's own training rows, resampled to each
    ratio), adversary models on draws from ``ctx.adversary``; the black-box queries come from ``ctx.test``.
    Each population is trained by the target's recipe (defended cells get defended populations), so the
    cell measures how much that training pipeline leaks the property's share.

    Returns:
        ``distinguishing_accuracy`` (headline, in [0, 1], 0.5 = chance, higher = more susceptible): the share of
        victim models assigned to the right distribution, at the decision threshold the attack chose on the
        adversary's own models (never on the victims); ``auc`` (headline, in [0, 1], higher = more susceptible):
        the ROC AUC of the victims' scores; ``adversary_accuracy``: the accuracy of that threshold on the
        adversary's own models (held-out scores); ``one_sided``: 1 when every victim fell on the same side of
        that threshold (the accuracy is then the share of one population whatever the scores: read the AUC),
        else 0; ``n_victim_models``.
    """
    from torch.utils.data import DataLoader

    names = list(getattr(ctx.dataset, "sensitive_columns", None) or [])
    if ctx.member.z is None or ctx.adversary.z is None or ctx.test.z is None or params.property not in names:
        raise NotApplicableError(
            f"Distribution inference on {params.property!r} needs that sensitive column; the dataset has {names}."
        )
    col = names.index(params.property)
    rng = numpy_rng(derive_seed(ctx.seed, "distribution_inference", "splits"))
    seed = derive_seed(ctx.seed, "distribution_inference")
    cache = None if ctx.cache_dir is None else ctx.cache_dir / "distribution_inference" / "di_cell_0"

    def pool(data: TensorData, ratio: float) -> np.ndarray:
        return ratio_indices(data.z.numpy()[:, col] == params.property_value, ratio, rng)  # type: ignore[union-attr]

    def queries(ratio: float) -> DataLoader:
        x, y, z = ctx.test.x.numpy(), ctx.test.y.numpy(), ctx.test.z.numpy()  # type: ignore[union-attr]
        picked = sample_with_ratio(z[:, col] == params.property_value, ratio, params.test_subsample, rng)
        return DataLoader(_tensor_dataset(x[picked], y[picked]), batch_size=256)

    extra = {"meta_epochs": params.meta_epochs, "lr": params.lr} if isinstance(params, WhiteBoxPIMParams) else {}
    attack = cls(
        ctx.member.x.numpy(), ctx.member.y.numpy(), ctx.member.z.numpy(),
        ctx.test.x.numpy(), ctx.test.y.numpy(), ctx.test.z.numpy(),
        names, params.property, params.ratio1, params.ratio2, "custom", "custom",
        int(ctx.member.x[0].numel()), max(2, int(getattr(ctx.dataset, "num_classes", 2))), params.num_models,
        ctx.recipe.config.epochs, ctx.recipe.config.batch_size, ctx.device, None, "cell", 0,
        params.property_value, None, params.train_subsample, params.test_subsample,
        recipe=ctx.recipe, model_factory=ctx.model_factory, num_target_models=params.num_victim_models,
        seed=seed, progress=ctx.progress, **extra,
    )  # fmt: skip
    try:
        sources = {"adv_1": ctx.adversary, "adv_2": ctx.adversary, "target_1": ctx.member, "target_2": ctx.member}
        ratios = {"1": params.ratio1, "2": params.ratio2}
        pools = {tag: pool(data, ratios[tag[-1]]) for tag, data in sources.items()}
        # each model draws its own rows from its pool, at the pool's (exact) ratio: the models of a population
        # are independent samples of their distribution, so the victims' accuracy is not one draw counted N times
        size = min(params.train_subsample, *(len(rows) for rows in pools.values()))
        size = max(10, size)
        jobs = {}
        for tag, data in sources.items():
            rows = pools[tag]
            mask = data.z.numpy()[rows, col] == params.property_value  # type: ignore[union-attr]
            count = params.num_models if tag.startswith("adv") else params.num_victim_models
            draws = numpy_rng(derive_seed(seed, "population", tag, "draws"))
            jobs[tag] = (data, [rows[sample_with_ratio(mask, float(mask.mean()), size, draws)] for _ in range(count)])
        # the four populations train in one stacked run (same rows, seeds and cache keys as one run each)
        populations = attack._fit_populations(jobs, cache_dir=cache)
        given = dict(
            models_adv_1=populations["adv_1"],
            models_adv_2=populations["adv_2"],
            models_target_1=populations["target_1"],
            models_target_2=populations["target_2"],
        )
        if cls is SuriEvans2022:
            given.update(test_loader_1=queries(params.ratio1), test_loader_2=queries(params.ratio2))
        result = attack.attack(**given)
    except InvalidParameterError as exc:
        raise NotApplicableError(f"Distribution inference cannot sample the requested ratios here: {exc}") from exc
    # predictions are calibrated by the attack: 0.5 is the threshold it chose on the adversary's own models
    metrics = evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])
    return {
        "distinguishing_accuracy": metrics["distinguishing_accuracy"],
        "auc": metrics["auc_score"],
        "adversary_accuracy": float(result["adversary_accuracy"]),
        "one_sided": float(result["one_sided"]),  # the aggregation warns on 1.0 (one_sided_decisions)
        "n_victim_models": float(len(result["ground_truth"])),
    }


def run_suri_evans_2022(ctx: CellContext, params: DistributionInferenceParams) -> dict[str, float]:
    """Layer-2 adapter of the black-box KL test (see :func:`_run`)."""
    return _run(ctx, params, SuriEvans2022)


def run_whitebox_pim(ctx: CellContext, params: WhiteBoxPIMParams) -> dict[str, float]:
    """Layer-2 adapter of the white-box meta-classifier (see :func:`_run`)."""
    return _run(ctx, params, WhiteBoxPIM)


_DATA = (
    "victim models: the target's training rows resampled to each ratio; adversary models: the adversary's own "
    "rows resampled to each ratio; every model trained with the target's recipe"
)

register_attack(
    AttackInfo(
        key="suri_evans_2022",
        code="P4",
        name="KL-divergence distribution inference (Suri & Evans)",
        risk="distribution_inference",
        cls=SuriEvans2022,
        params=DistributionInferenceParams,
        threat_model=ThreatModel(
            knowledge="black-box: output probabilities; architecture and training recipe known",
            data=_DATA + "; queries: held-out rows at each ratio",
            budget="num_models adversary models per ratio; test_subsample queries per ratio",
            goal="tell whether a model's training data had the property at ratio1 or ratio2",
        ),
        run=run_suri_evans_2022,
        summary="Victims are scored by pairwise KL votes against the adversary's two model populations.",
        reference="A. Suri, D. Evans. Formalizing and Estimating Distribution Inference Risks. PETS 2022.",
        modalities=("tabular", "image"),
    )
)

register_attack(
    AttackInfo(
        key="whitebox_pim",
        code="P4",
        name="Permutation-invariant meta-classifier (white-box)",
        risk="distribution_inference",
        cls=WhiteBoxPIM,
        params=WhiteBoxPIMParams,
        threat_model=ThreatModel(
            knowledge="white-box: the weights of the linear layers; architecture and training recipe known",
            data=_DATA,
            budget="num_models adversary models per ratio; meta_epochs meta-classifier steps",
            goal="tell whether a model's training data had the property at ratio1 or ratio2",
        ),
        run=run_whitebox_pim,
        summary="A DeepSets-style meta-classifier over every linear layer's neurons, trained on adversary models.",
        reference="K. Ganju et al. Property Inference Attacks on Fully Connected Neural Networks using Permutation "
        "Invariant Representations. CCS 2018.",
    )
)

register_metric(
    MetricInfo(
        key="evaluate_distinguishing_accuracy",
        name="Distinguishing accuracy and AUC",
        risk="distribution_inference",
        func=evaluate_distinguishing_accuracy,
        summary="Accuracy (at a threshold) and ROC AUC of telling the two training distributions apart.",
    )
)
