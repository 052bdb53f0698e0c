"""Registry entries of the data reconstruction risk (P3): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.exceptions import NotApplicableError
from amulet.registry import (
    AttackInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    ThreatModel,
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
        headline_metrics=(
            HeadlineMetric(
                key="mse",
                name="Reconstruction MSE",
                higher_is_riskier=False,
                unit="",
                description="Mean squared error between reconstructions and class means (lower = more susceptible).",
            ),
            HeadlineMetric(
                key="ssim",
                name="Reconstruction SSIM",
                higher_is_riskier=True,
                unit="",
                description="Structural similarity to class means (images only).",
            ),
        ),
    )
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

    Iterates are clipped to ``ctx.clip_range`` or, when the dataset declares none (tabular data), to the range
    of the training inputs. Returns ``mse`` (mean over classes) and ``ssim``. SSIM is only defined for image
    inputs: for tabular data ``ssim`` is ``float("nan")``, which the assessment engine treats as "not measured"
    for this cell.
    """
    if ctx.dataset.modality not in ("image", "tabular"):
        raise NotApplicableError(f"Model inversion needs image or tabular inputs; got {ctx.dataset.modality!r}.")
    input_shape = tuple(ctx.input_shape) or tuple(ctx.member.x.shape[1:])
    # Iterates stay in the valid input range: the dataset's (images: [0, 1]) or else the training data's range.
    low, high = float(ctx.member.x.min()), float(ctx.member.x.max())
    clip_range = ctx.clip_range or ((low, high) if high > low else None)
    n_classes = int(ctx.dataset.num_classes)
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
        progress=ctx.progress,
    )
    reconstructions = attack.attack()
    result = evaluate_similarity(ctx.member.loader(1024), reconstructions, input_shape, n_classes, ctx.device)
    return {"mse": result["mean_mse"], "ssim": result["mean_ssim"]}


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
        name="Reconstruction similarity (MSE, SSIM)",
        risk="data_reconstruction",
        func=evaluate_similarity,
        summary="Per-class MSE and SSIM (images only) between reconstructions and class means.",
    )
)
