"""Registry entries of the membership inference risk (P1): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from amulet.exceptions import NotApplicableError
from amulet.membership_inference.attacks import LiRA
from amulet.membership_inference.defenses import DPSGD
from amulet.membership_inference.defenses._dpsgd import dp_sgd_loop, make_dp_compatible
from amulet.membership_inference.defenses._stacked_dpsgd import dp_sgd_stacked_loop
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.recipes import LoopStage
from amulet.registry import (
    AttackInfo,
    AttackOutput,
    DefenseInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    RocCurve,
    ThreatModel,
    VulnerableRecord,
    derived_from,
    register_attack,
    register_defense,
    register_metric,
    register_risk,
)
from amulet.utils import TensorData, derive_seed, numpy_rng, roc_curve_points

if TYPE_CHECKING:
    from amulet.registry import CellContext

RISK = register_risk(
    RiskInfo(
        key="membership_inference",
        code="P1",
        name="Membership inference",
        category="privacy",
        description="Inferring whether a record was in the training data.",
        headline_metrics=(
            HeadlineMetric(
                key="auc",
                name="AUC",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="Area under the ROC curve of the membership scores.",
            ),
            HeadlineMetric(
                key="tpr_at_fpr",
                name="TPR at 1% FPR",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="True-positive rate at a 1% false-positive rate.",
            ),
            HeadlineMetric(
                key="balanced_acc",
                name="Balanced accuracy",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="Best balanced accuracy over thresholds.",
            ),
        ),
    )
)


# ---------------------------------------------------------------------------------------------------------------
# LiRA


@derived_from(
    LiRA,
    engine_only={
        "max_members": "The adapter draws at most this many candidate members (and as many non-members).",
        "scores": "Which of LiRA's two scores the cell reports as its headline metrics.",
        "fpr_threshold": "The false-positive rate at which the cell reads tpr_at_fpr (compute_mi_metrics).",
    },
)
class LiRAParams(BaseModel):
    """Parameters of the ``lira`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    num_shadow: int = Field(default=8, ge=2, le=256, description="Number of shadow models.")
    pkeep: float = Field(
        default=0.5, gt=0, lt=1, description="Fraction of the shadows each candidate record is a member of."
    )
    max_members: int = Field(
        default=2500,
        ge=10,
        le=1_000_000,
        description="At most this many training rows (and as many adversary rows) are candidates.",
    )
    scores: Literal["online", "offline"] = Field(
        default="online", description="Which LiRA score gives the headline metrics (both are reported)."
    )
    fix_variance: bool = Field(
        default=True, description="One global IN and OUT variance (recommended below 64 shadows)."
    )
    fpr_threshold: float = Field(default=0.01, gt=0, lt=1, description="FPR at which tpr_at_fpr is read.")


def _subsample_index(n: int, limit: int, seed: int) -> np.ndarray:
    """Positions of ``min(n, limit)`` rows out of ``n``: all of them in order, or a seeded sample."""
    if n <= limit:
        return np.arange(n)
    return numpy_rng(seed).choice(n, size=limit, replace=False)


#: How many of the most exposed member records a LiRA cell reports.
TOP_RECORDS = 10


def _most_exposed(
    scores: np.ndarray, m: int, member_rows: np.ndarray, labels: np.ndarray, k: int
) -> list[VulnerableRecord]:
    """The ``k`` members (``scores[:m]``) with the highest scores, named by their training-split rows."""
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    top = [int(i) for i in order if i < m][:k]
    return [
        VulnerableRecord(record=int(member_rows[i]), label=int(labels[i]), score=float(scores[i]), rank=int(rank[i]))
        for i in top
    ]


def run_lira(ctx: CellContext, params: LiRAParams) -> AttackOutput:
    """Layer-2 adapter of LiRA.

    Candidates: ``m`` rows of ``ctx.member`` (members) and ``m`` rows of ``ctx.adversary`` (non-members),
    ``m = min(max_members, |member|, |adversary|)``. Shadows are built with ``ctx.model_factory`` and
    trained with ``ctx.recipe`` (a defended target gets defended shadows) on random ``pkeep`` fractions of
    the candidates, so every candidate is IN for exactly ``round(pkeep * num_shadow)`` shadows (the online
    setting of Carlini et al.). Shadows are cached in ``ctx.cache_dir / "lira"``.

    Returns:
        Metrics ``auc``, ``tpr_at_fpr``, ``balanced_acc`` (from the ``scores`` variant), ``tpr_at_0_1pct_fpr``,
        ``threshold_score`` (of ``balanced_acc``), ``threshold_at_fpr`` (of ``tpr_at_fpr``), the same six with
        suffix ``_online`` and ``_offline``, and ``n_candidates``;
        the ROC curve of the ``scores`` variant; the :data:`TOP_RECORDS` members with the highest scores
        (their rows in the training split when ``ctx.member_index`` is known).
    """
    import torch

    m = min(params.max_members, len(ctx.member), len(ctx.adversary))
    if m < 2:
        raise NotApplicableError("LiRA needs at least two training rows and two adversary rows.")
    member_pos = _subsample_index(len(ctx.member), m, derive_seed(ctx.seed, "lira", "members"))
    members = ctx.member.subset(member_pos)
    outsiders = ctx.adversary.subset(
        _subsample_index(len(ctx.adversary), m, derive_seed(ctx.seed, "lira", "outsiders"))
    )
    pool_z = None
    if members.z is not None and outsiders.z is not None:  # kept so shadows of a debiased target can be debiased
        pool_z = torch.cat([members.z, outsiders.z])
    pool = TensorData(torch.cat([members.x, outsiders.x]), torch.cat([members.y, outsiders.y]), pool_z)
    num_classes = int(getattr(ctx.dataset, "num_classes", 0) or pool.num_classes)
    attack = LiRA(
        ctx.target,
        np.arange(m),
        "custom",
        "custom",
        pool,
        "cell",
        int(np.prod(ctx.input_shape)) if ctx.input_shape else int(pool.x[0].numel()),
        max(num_classes, 2),
        ctx.recipe.config.batch_size,
        params.pkeep,
        torch.nn.CrossEntropyLoss(),
        params.num_shadow,
        ctx.recipe.config.epochs,
        ctx.device,
        None if ctx.cache_dir is None else Path(ctx.cache_dir) / "lira",
        0,
        recipe=ctx.recipe,
        model_factory=ctx.model_factory,
        fix_variance=params.fix_variance,
        seed=derive_seed(ctx.seed, "lira"),
        progress=ctx.progress,
    )
    result = attack.attack()
    out: dict[str, float] = {"n_candidates": float(2 * m)}
    for variant in ("online", "offline"):
        metrics = compute_mi_metrics(result[f"lira_{variant}_preds"], result["true_labels"], params.fpr_threshold)
        for key, value in metrics.items():
            out[f"{key}_{variant}"] = value
            if variant == params.scores:
                out[key] = value
    scores = np.asarray(result[f"lira_{params.scores}_preds"], dtype=np.float64)
    truth = np.asarray(result["true_labels"]).astype(int)
    roc = None
    if np.isfinite(scores).all():
        fpr, tpr = roc_curve_points(scores, truth)
        roc = RocCurve(fpr=fpr, tpr=tpr, n_positive=int(truth.sum()), n_negative=int((truth == 0).sum()))
    member_rows = member_pos if ctx.member_index is None else np.asarray(ctx.member_index)[member_pos]
    records = _most_exposed(np.nan_to_num(scores, nan=-np.inf), m, member_rows, members.y.numpy(), TOP_RECORDS)
    return AttackOutput(metrics=out, roc=roc, vulnerable_records=records)


register_attack(
    AttackInfo(
        key="lira",
        code="P1",
        name="Likelihood-ratio attack (LiRA)",
        risk="membership_inference",
        cls=LiRA,
        params=LiRAParams,
        threat_model=ThreatModel(
            knowledge="black-box: the target's output logits; the architecture and the full training recipe "
            "(optimizer, epochs, defenses) are known",
            data="the candidate records: half of them the target's training rows, half the adversary's own rows "
            "(disjoint from training); shadows train on random halves of the candidates (online LiRA)",
            budget="num_shadow shadow models trained with the target's recipe; one query per candidate",
            goal="tell which candidates were in the training set",
        ),
        run=run_lira,
        summary="Shadow models give per-record IN/OUT Gaussians of the logit-scaled confidence; the target's "
        "confidence is scored by their likelihood ratio (online) or a one-sided OUT test (offline).",
        reference="N. Carlini et al. Membership Inference Attacks From First Principles. IEEE S&P 2022.",
    )
)


# ---------------------------------------------------------------------------------------------------------------
# DP-SGD


@derived_from(
    DPSGD,
    overrides={
        "accountant": "RDP: the accountant the utility figure in this model's docstring was measured with.",
        "epochs": "DP-SGD replaces the spec's training config for this stage; 10 epochs keep utility under the "
        "noise (see the docstring); null keeps the spec's.",
    },
    renamed={"noise_multiplier": "sigma", "max_grad_norm": "max_per_sample_grad_norm"},
    adapted={
        "epochs": "null: the spec's training.epochs.",
        "optimizer": "'adam' or 'sgd' becomes the torch optimizer over the model's parameters; null: the spec's.",
    },
    engine_only={
        "batch_size": "Expected (Poisson) batch size of the loader the stage builds (DPSGD takes the loader).",
        "lr": "Learning rate of the optimizer the stage builds (DPSGD takes the optimizer).",
    },
)
class DPSGDParams(BaseModel):
    """Parameters of the ``dp_sgd`` defense (a training-loop stage).

    DP-SGD trains with its own ``epochs``, ``batch_size``, ``lr`` and ``optimizer``: they replace the spec's
    training config for this stage only (weight decay and momentum still come from the spec), in the target
    and in every model trained with the row's recipe (LiRA shadows, poisoning retraining, distribution-
    inference populations). ``null`` keeps the spec's value. The spec's config is tuned for non-private
    training; with DP noise it can end at the majority class (on census, 5 epochs of Adam at lr 0.005 did),
    so the defaults here are ones that keep utility: on census (1,500 training rows) about 83 % clean
    accuracy at epsilon 4.8 (RDP, delta 1e-5).
    """

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Noise multiplier sigma: noise std relative to max_grad_norm (ignored with target_epsilon).",
    )
    max_grad_norm: float = Field(default=1.0, gt=0, le=1e6, description="Per-sample gradient clipping norm C.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="Target delta of the reported epsilon.")
    target_epsilon: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="If set, the noise multiplier is chosen (Opacus' accountant utilities) so that each trained "
        "model spends at most this epsilon at delta; noise_multiplier must then be left unset.",
    )
    accountant: Literal["rdp", "prv", "gdp"] = Field(default="rdp", description="Opacus privacy accountant.")
    max_physical_batch_size: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Largest physical batch (memory); None: no splitting."
    )
    epochs: int | None = Field(
        default=10, ge=1, le=10_000, description="DP-SGD training epochs (null: the spec's training.epochs)."
    )
    batch_size: int | None = Field(
        default=64,
        ge=1,
        le=1_000_000,
        description="Expected (Poisson) batch size of DP-SGD (null: the spec's training.batch_size).",
    )
    lr: float | None = Field(
        default=0.01, gt=0, le=10, description="DP-SGD learning rate (null: the spec's training.lr)."
    )
    optimizer: Literal["adam", "sgd"] | None = Field(
        default="adam", description="DP-SGD optimizer (null: the spec's training.optimizer)."
    )

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPSGDParams:
        if self.target_epsilon is not None and "noise_multiplier" in self.model_fields_set:
            raise ValueError(
                "give either 'noise_multiplier' or 'target_epsilon' for dp_sgd, not both: target_epsilon picks "
                "the noise multiplier"
            )
        return self

    def training_overrides(self) -> dict[str, Any]:
        """The stage's own training parameters (None: keep the spec's)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer}


def make_dp_sgd_stage(params: DPSGDParams) -> LoopStage:
    """A loop stage training with DP-SGD (Opacus); the model it returns carries ``privacy_epsilon_``."""
    return LoopStage(
        defense="dp_sgd",
        params=params.model_dump(),
        train=dp_sgd_loop(
            noise_multiplier=params.noise_multiplier,
            max_grad_norm=params.max_grad_norm,
            delta=params.delta,
            accountant=params.accountant,
            max_physical_batch_size=params.max_physical_batch_size,
            target_epsilon=params.target_epsilon,
            training=params.training_overrides(),
        ),
        # Populations (LiRA shadows, distribution-inference models) of a DP-SGD row train as one ensemble;
        # physical batch splitting exists to bound memory, so those recipes keep training one by one.
        train_stacked=None
        if params.max_physical_batch_size
        else dp_sgd_stacked_loop(
            noise_multiplier=params.noise_multiplier,
            max_grad_norm=params.max_grad_norm,
            delta=params.delta,
            accountant=params.accountant,
            target_epsilon=params.target_epsilon,
            training=params.training_overrides(),
        ),
        # The loop swaps BatchNorm for GroupNorm; the trained weights load back into this structure. An
        # uploaded graph keeps its structure (one with BatchNorm is refused when the loop starts).
        adapt_model=make_dp_compatible,
    )


register_defense(
    DefenseInfo(
        key="dp_sgd",
        code="PD1",
        name="DP-SGD",
        targets=("membership_inference", "data_reconstruction"),
        cls=DPSGD,
        params=DPSGDParams,
        make_stage=make_dp_sgd_stage,
        summary="Per-sample gradient clipping and Gaussian noise on Poisson-sampled batches (Opacus); BatchNorm "
        "is replaced by GroupNorm. An uploaded model (.pt2/.onnx) gets its per-sample gradients from torch.func "
        "(same clipping, noise and accounting); one with BatchNorm is not run, with the reason. Trains with its "
        "own epochs, batch size, learning rate and optimizer (defaults that keep utility; they override the "
        "spec's training config for this stage only); "
        "`target_epsilon` picks the noise multiplier. The trained model carries the spent epsilon as "
        "`privacy_epsilon_` (and `privacy_delta_`, `privacy_noise_multiplier_`). Batch transforms of stacked "
        "defenses (adversarial training) are applied.",
        reference="M. Abadi et al. Deep Learning with Differential Privacy. CCS 2016.",
    )
)

register_metric(
    MetricInfo(
        key="compute_mi_metrics",
        name="Membership inference AUC, balanced accuracy, TPR at low FPR",
        risk="membership_inference",
        func=compute_mi_metrics,
        summary="ROC AUC, best balanced accuracy and TPR at 1% (and 0.1%) FPR of membership scores.",
    )
)
