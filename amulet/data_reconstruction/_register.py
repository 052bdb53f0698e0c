"""Registry entries of the data reconstruction risk (P3): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from amulet.data_reconstruction._layout import TabularLayout
from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.exceptions import NotApplicableError
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

if TYPE_CHECKING:
    from amulet.registry import CellContext

RISK = register_risk(
    RiskInfo(
        key="data_reconstruction",
        code="P3",
        name="Data reconstruction",
        category="privacy",
        description="Reconstructing representative training inputs (model inversion).",
        # The primary (first) metric has one meaning per modality, the same for every row of an assessment
        # (an assessment has one dataset): how much of each class's typical input the reconstruction recovers.
        headline_metrics=(
            HeadlineMetric(
                key="similarity",
                name="Reconstruction similarity",
                higher_is_riskier=True,
                unit="",
                description="Images: mean SSIM between each class's reconstruction and its class mean, in [-1, 1]. "
                "Tables: share of categorical columns whose most likely category in the reconstruction is the "
                "class's most frequent one, in [0, 1]. Higher = more susceptible.",
                bounds=(-1.0, 1.0),
            ),
            HeadlineMetric(
                key="mse",
                name="Reconstruction MSE",
                higher_is_riskier=False,
                unit="",
                description="Mean squared error between each class's reconstruction and its class mean over every "
                "input element, on the data's encoded scale (lower = closer reconstructions).",
            ),
        ),
    )
)


@derived_from(
    FredriksonCCS2015,
    overrides={
        "beta": "A patience of 50 steps (layer 1's 100, upstream's) stops a saturated search sooner.",
        "gamma": "0: run until alpha steps or the patience, since with large steps the cost saturates early.",
        "lamda": "Large steps with inputs clipped to their valid range give recognisable reconstructions (see the "
        "field's description); layer 1's 0.003 (upstream's) barely leaves the starting point.",
    },
)
class FredriksonCCS2015Params(BaseModel):
    """Parameters of the ``fredrikson_ccs_2015`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    alpha: int = Field(default=100, ge=1, le=100_000, description="Maximum gradient steps per class.")
    beta: int = Field(default=50, ge=1, le=100_000, description="Patience: steps without improvement before stopping.")
    gamma: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Stop when the cost 1 - p_class reaches this value (0: run until alpha steps or patience).",
    )
    lamda: float = Field(
        default=100.0,
        gt=0,
        le=100_000,
        description="Gradient step size. Large steps (with inputs clipped to their valid range) give the most "
        "recognisable reconstructions: the softmax saturates, so small steps barely leave the starting point.",
    )


def run_fredrikson_ccs_2015(ctx: CellContext, params: FredriksonCCS2015Params) -> dict[str, float]:
    """Layer-2 adapter: invert the target for every class, compare with the class means of its training rows.

    Iterates are clipped to ``ctx.clip_range`` or, when the dataset declares none, to the range of the
    training inputs. On tables the one-hot block of every categorical column is also projected onto the
    probability simplex (a block without its first category, as the built-in tables encode them: onto
    {x >= 0, sum <= 1}) after each step, using the column layout the dataset records (its fitted encoding;
    :meth:`TabularLayout.from_dataset`). A table without a recorded encoding has all its columns treated as
    numeric (a warning is logged) and ``similarity`` is then not measured (NaN): there is no category to
    recover.

    Returns (all on the data's encoded scale):
        ``similarity`` (headline, higher = more susceptible): images: mean SSIM over classes, in [-1, 1];
        tables: mean category recovery accuracy over classes, in [0, 1] (see :func:`evaluate_similarity`).
        ``mse`` (headline, lower = closer reconstructions): mean over classes of the MSE over every input element.
        Tables also get ``numeric_mse`` (MSE over the numeric columns; with min-max scaled data each squared
        error is at most 1) and ``category_accuracy_prior`` (the recovery accuracy of guessing every column's
        overall most frequent category: ``similarity`` above it is class information, not just population
        statistics).
    """
    if ctx.dataset.modality not in ("image", "tabular"):
        raise NotApplicableError(f"Model inversion needs image or tabular inputs; got {ctx.dataset.modality!r}.")
    input_shape = tuple(ctx.input_shape) or tuple(ctx.member.x.shape[1:])
    # Iterates stay in the valid input range: the dataset's (images: [0, 1]) or else the training data's range.
    low, high = float(ctx.member.x.min()), float(ctx.member.x.max())
    clip_range = ctx.clip_range or ((low, high) if high > low else None)
    n_classes = int(ctx.dataset.num_classes)
    layout = None
    if ctx.dataset.modality == "tabular" and len(input_shape) == 1:
        layout = TabularLayout.from_dataset(ctx.dataset, n_features=int(input_shape[0]))
    attack = FredriksonCCS2015(
        ctx.target,
        input_shape,
        n_classes,
        ctx.device,
        params.alpha,
        params.beta,
        params.gamma,
        params.lamda,
        clip_range=clip_range,
        layout=layout if layout is not None and layout.categorical else None,
        progress=ctx.progress,
    )
    reconstructions = attack.attack()
    result = evaluate_similarity(
        ctx.member.loader(1024), reconstructions, input_shape, n_classes, ctx.device, layout=layout
    )
    if result["modality"] == "image":
        return {"similarity": result["mean_ssim"], "mse": result["mean_mse"]}
    out = {"similarity": result.get("mean_category_accuracy", float("nan")), "mse": result["mean_mse"]}
    if "mean_numeric_mse" in result:
        out["numeric_mse"] = result["mean_numeric_mse"]
    if "category_accuracy_prior" in result:
        out["category_accuracy_prior"] = result["category_accuracy_prior"]
    return out


register_attack(
    AttackInfo(
        key="fredrikson_ccs_2015",
        code="P3",
        name="Model inversion (Fredrikson et al. 2015)",
        risk="data_reconstruction",
        cls=FredriksonCCS2015,
        params=FredriksonCCS2015Params,
        threat_model=ThreatModel(
            knowledge="white-box: gradients of the class probabilities with respect to the input",
            data="none (starts from an all-zero input)",
            budget="alpha gradient steps per class",
            goal="reconstruct a representative input of every class",
        ),
        run=run_fredrikson_ccs_2015,
        summary="Gradient descent on 1 - p_class from a zero input, keeping the lowest-cost iterate per class.",
        reference="M. Fredrikson, S. Jha, T. Ristenpart. Model Inversion Attacks that Exploit Confidence "
        "Information and Basic Countermeasures. CCS 2015.",
    )
)

register_metric(
    MetricInfo(
        key="evaluate_similarity",
        name="Reconstruction similarity (MSE; SSIM on images; category recovery on tables)",
        risk="data_reconstruction",
        func=evaluate_similarity,
        summary="Per-class MSE on every modality, SSIM on images, numeric-column MSE and one-hot category "
        "recovery accuracy on tables, between reconstructions and class means.",
    )
)
