"""Registry entries of the discriminatory behaviour risk (F): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from amulet.discriminatory_behavior.defenses import AdversarialDebiasing, debiasing_loop, debiasing_stacked_loop
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.exceptions import NotApplicableError
from amulet.recipes import LoopStage
from amulet.registry import (
    AttackInfo,
    DefenseInfo,
    HeadlineMetric,
    MetricInfo,
    NoParams,
    RiskInfo,
    ThreatModel,
    attribute_key,
    derived_from,
    register_attack,
    register_defense,
    register_metric,
    register_risk,
)

if TYPE_CHECKING:
    from amulet.registry import CellContext

RISK = register_risk(
    RiskInfo(
        key="discriminatory_behavior",
        code="F",
        name="Discriminatory behaviour",
        category="fairness",
        description="Different treatment of groups defined by sensitive attributes.",
        headline_metrics=(
            HeadlineMetric(
                key="demographic_parity",
                name="Demographic parity difference",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="Worst case over sensitive attributes of |P(yhat=1|a=1) - P(yhat=1|a=0)|.",
            ),
            HeadlineMetric(
                key="equalized_odds",
                name="Equalized odds",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 2.0),  # the sum of two parity gaps, each in [0, 1]
                description="Worst case of TPR parity + FPR parity.",
            ),
            HeadlineMetric(
                key="p_rule",
                name="p%-rule",
                higher_is_riskier=False,
                unit="%",
                description="Worst case of 100*min(r, 1/r) (lower = more discriminatory).",
            ),
        ),
    )
)


def run_subgroup_metrics(ctx: CellContext, params: NoParams) -> dict[str, float]:
    """Layer-2 adapter: fairness metrics of the target on the held-out rows (``ctx.test``).

    Returns the worst case over sensitive attributes (``demographic_parity`` and ``equalized_odds``: maximum;
    ``p_rule``: minimum) and, per attribute, ``demographic_parity_<a>``, ``equalized_odds_<a>``, ``p_rule_<a>``,
    ``true_positive_parity_<a>``, ``false_positive_parity_<a>``. Non-binary attributes report the worst pairwise
    gap (see :mod:`amulet.discriminatory_behavior.metrics`).

    Raises:
        NotApplicableError: when the dataset has no sensitive attributes or the task is not binary.
    """
    names = list(ctx.dataset.sensitive_columns or [])
    if not names or ctx.test.z is None:
        raise NotApplicableError("Fairness metrics need sensitive attributes; this dataset declares none.")
    if int(ctx.dataset.num_classes) != 2:
        raise NotApplicableError(
            f"Fairness metrics need a binary task (favourable outcome = class 1); this one has "
            f"{ctx.dataset.num_classes} classes."
        )
    if len(names) != ctx.test.z.reshape(len(ctx.test), -1).shape[1]:
        names = [f"attr{i}" for i in range(ctx.test.z.reshape(len(ctx.test), -1).shape[1])]
    metrics = DiscriminatoryBehavior(ctx.target, ctx.test.loader(1024, with_z=True), ctx.device)
    per_attribute = metrics.evaluate_subgroup_metrics()
    out: dict[str, float] = {}
    for i, values in per_attribute.items():
        key = attribute_key(names[i])
        for metric in (
            "demographic_parity",
            "equalized_odds",
            "p_rule",
            "true_positive_parity",
            "false_positive_parity",
        ):
            out[f"{metric}_{key}"] = float(values[metric])
    out["demographic_parity"] = max(v["demographic_parity"] for v in per_attribute.values())
    out["equalized_odds"] = max(v["equalized_odds"] for v in per_attribute.values())
    out["p_rule"] = min(v["p_rule"] for v in per_attribute.values())
    return out


register_attack(
    AttackInfo(
        key="subgroup_metrics",
        code="F",
        name="Subgroup fairness metrics",
        risk="discriminatory_behavior",
        cls=DiscriminatoryBehavior,
        params=NoParams,
        threat_model=ThreatModel(
            knowledge="black-box: the target's predicted labels",
            data="held-out test rows with their labels and sensitive attributes",
            budget="one query per test row",
            goal="measure how differently the model treats groups defined by sensitive attributes",
        ),
        run=run_subgroup_metrics,
        summary="Demographic parity, equalized odds (TPR + FPR parity) and p%-rule per sensitive attribute.",
        reference="M. Hardt, E. Price, N. Srebro. Equality of Opportunity in Supervised Learning. NeurIPS 2016.",
    )
)


@derived_from(
    AdversarialDebiasing,
    overrides={
        "pretrain_adversary_epochs": "2 epochs: they count in the recipe's epochs, which an assessment "
        "keeps small; layer 1's 5 would leave no epoch for the alternation at the default 5 epochs."
    },
    renamed={"fairness_weight": "lambdas"},
    adapted={"fairness_weight": "One weight becomes lambdas = [fairness_weight] * n_sensitive_attributes."},
    engine_only={
        "pretrain_classifier_epochs": "Epochs of ordinary training the stage runs before AdversarialDebiasing "
        "takes over (counted in the recipe's epochs).",
    },
)
class AdversarialDebiasingParams(BaseModel):
    """Parameters of the ``adversarial_debiasing`` defense in an assessment."""

    model_config = ConfigDict(extra="forbid")

    fairness_weight: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="Weight lambda of the adversary's loss, the same for every sensitive attribute (higher = "
        "fairer, less accurate; upstream's census example uses 40). On census (5,000 rows, 8 epochs) 10 cuts the "
        "sex demographic-parity gap from about 0.18 to under 0.05 for about 2 points of accuracy.",
    )
    pretrain_classifier_epochs: int = Field(
        default=2,
        ge=0,
        le=1000,
        description="Epochs of ordinary training before debiasing (counted in the recipe's epochs; at least one "
        "epoch is always left for debiasing).",
    )
    pretrain_adversary_epochs: int = Field(
        default=2, ge=0, le=1000, description="Epochs that train only the adversary before the alternation."
    )
    adversary_lr: float = Field(default=1e-3, gt=0, le=10, description="Adam learning rate of the adversary.")
    adversary_steps: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Adversary steps before every classifier step; fewer lets the classifier fool a stale "
        "adversary instead of hiding the attributes.",
    )
    average_decay: float = Field(
        default=0.95,
        ge=0,
        lt=1,
        description="The debiased model is the moving average of its iterates with this decay (0 = last iterate).",
    )


def make_adversarial_debiasing_stage(params: AdversarialDebiasingParams) -> LoopStage:
    """The recipe stage of adversarial debiasing: it replaces the training loop.

    The loop applies the batch transforms of other stacked defenses (e.g. adversarial training) and raises
    :class:`~amulet.exceptions.NotApplicableError` when the training data has no sensitive attributes.
    """
    # the one-at-a-time loop and the stacked trainer take the same settings
    settings = {
        name: getattr(params, name)
        for name in (
            "fairness_weight",
            "pretrain_classifier_epochs",
            "pretrain_adversary_epochs",
            "adversary_lr",
            "adversary_steps",
            "average_decay",
        )
    }
    return LoopStage(
        defense="adversarial_debiasing",
        params=params.model_dump(),
        train=functools.partial(debiasing_loop, **settings),
        # Populations of a debiasing row (LiRA shadows, distribution-inference models) train as one ensemble,
        # each model as debiasing_loop would train it alone (tests/discriminatory_behavior/test_debiasing_stacked.py)
        train_stacked=debiasing_stacked_loop(**settings),
    )


register_defense(
    DefenseInfo(
        key="adversarial_debiasing",
        code="FD1",
        name="Adversarial debiasing",
        targets=("discriminatory_behavior",),
        cls=AdversarialDebiasing,
        params=AdversarialDebiasingParams,
        make_stage=make_adversarial_debiasing_stage,
        summary="An adversary predicts the sensitive attributes from the logits; the classifier is trained to "
        "defeat it, batch by batch.",
        reference="G. Louppe, M. Kagan, K. Cranmer. Learning to Pivot with Adversarial Networks. NeurIPS 2017; "
        "B. H. Zhang, B. Lemoine, M. Mitchell. Mitigating Unwanted Biases with Adversarial Learning. AIES 2018.",
    )
)

register_metric(
    MetricInfo(
        key="subgroup_metrics",
        name="Subgroup fairness metrics",
        risk="discriminatory_behavior",
        func=DiscriminatoryBehavior,
        summary="DiscriminatoryBehavior(model, test_loader, device).evaluate_subgroup_metrics().",
    )
)
register_metric(
    MetricInfo(
        key="adversary_auc",
        name="Adversary AUC",
        risk="discriminatory_behavior",
        func=DiscriminatoryBehavior.adversary_auc,
        summary="ROC AUC of a discriminator predicting each sensitive attribute from the model's outputs.",
    )
)
