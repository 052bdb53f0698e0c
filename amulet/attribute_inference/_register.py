"""Registry entries of the attribute inference risk (P2): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.exceptions import NotApplicableError
from amulet.registry import (
    AttackInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    ThreatModel,
    attribute_key,
    derived_from,
    register_attack,
    register_metric,
    register_risk,
)
from amulet.utils import derive_seed, numpy_rng

if TYPE_CHECKING:
    from amulet.registry import CellContext
    from amulet.utils import TensorData

RISK = register_risk(
    RiskInfo(
        key="attribute_inference",
        code="P2",
        name="Attribute inference",
        category="privacy",
        description="Inferring sensitive attributes of records from the model's outputs.",
        headline_metrics=(
            HeadlineMetric(
                key="balanced_accuracy",
                name="Balanced attack accuracy",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="Worst case over sensitive attributes of the attack's balanced accuracy.",
            ),
            HeadlineMetric(
                key="auc",
                name="Attack AUC",
                higher_is_riskier=True,
                unit="",
                bounds=(0.0, 1.0),
                description="Worst case over sensitive attributes of the attack's AUC.",
            ),
        ),
    )
)


@derived_from(
    DudduCIKM2022,
    overrides={
        "max_iter": "200 epochs per attack MLP instead of layer 1's 300 (upstream's): the attack trains "
        "one MLP per sensitive attribute in every row of the matrix."
    },
    engine_only={
        "max_adversary_rows": "The adapter trains the attack on at most this many adversary rows (seeded subset).",
        "max_target_rows": "The adapter evaluates the attack on at most this many training rows (seeded subset).",
    },
)
class DudduCIKM2022Params(BaseModel):
    """Parameters of the ``duddu_cikm_2022`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    max_iter: int = Field(default=200, ge=1, le=5000, description="Maximum training epochs of each attack MLP.")
    max_adversary_rows: int = Field(
        default=5000, ge=50, le=10_000_000, description="The attack is trained on at most this many adversary rows."
    )
    max_target_rows: int = Field(
        default=5000, ge=50, le=10_000_000, description="The attack is evaluated on at most this many training rows."
    )
    batch_size: int = Field(default=1024, ge=1, le=1_000_000, description="Batch size for querying the target.")


def _subsample(data: TensorData, limit: int, seed: int) -> TensorData:
    if len(data) <= limit:
        return data

    return data.subset(numpy_rng(seed).choice(len(data), size=limit, replace=False))


def _is_binary(column: object) -> bool:
    import torch

    assert isinstance(column, torch.Tensor)
    values = torch.unique(column)
    return len(values) == 2 and bool(((values == 0) | (values == 1)).all())


def run_duddu_cikm_2022(ctx: CellContext, params: DudduCIKM2022Params) -> dict[str, float]:
    """Layer-2 adapter: train the attack on the adversary's rows, evaluate it on the target's training rows.

    Returns ``balanced_accuracy`` and ``auc`` (worst case = maximum over the binary sensitive attributes) and
    ``balanced_accuracy_<attribute>`` / ``auc_<attribute>`` for each of them.

    Raises:
        NotApplicableError: when the dataset has no (binary) sensitive attributes.
    """
    names = list(ctx.dataset.sensitive_columns or [])
    if not names or ctx.adversary.z is None or ctx.member.z is None:
        raise NotApplicableError("Attribute inference needs sensitive attributes; this dataset declares none.")
    adversary = _subsample(ctx.adversary, params.max_adversary_rows, derive_seed(ctx.seed, "duddu", "adversary"))
    member = _subsample(ctx.member, params.max_target_rows, derive_seed(ctx.seed, "duddu", "member"))
    assert adversary.z is not None and member.z is not None
    if len(names) != adversary.z.shape[1]:
        names = [f"attr{i}" for i in range(adversary.z.shape[1])]
    columns = [i for i in range(adversary.z.shape[1]) if _is_binary(adversary.z[:, i]) and _is_binary(member.z[:, i])]
    if not columns:
        raise NotApplicableError("Attribute inference (DudduCIKM2022) needs at least one binary sensitive attribute.")
    ctx.progress.start("attribute_inference", 1, "attribute inference")
    attack = DudduCIKM2022(
        ctx.target,
        adversary.x,
        member.x,
        adversary.z[:, columns].numpy(),
        params.batch_size,
        ctx.device,
        max_iter=params.max_iter,
        random_state=derive_seed(ctx.seed, "duddu", "mlp") % (2**32),
    )
    scores = evaluate_attribute_inference(member.z[:, columns].numpy(), attack.attack())
    ctx.progress.advance("attribute_inference")
    ctx.progress.finish("attribute_inference")
    out: dict[str, float] = {}
    for j, column in enumerate(columns):
        key = attribute_key(names[column])
        out[f"balanced_accuracy_{key}"] = scores[j]["attack_accuracy"]
        out[f"auc_{key}"] = scores[j]["auc_score"]
    for metric, field in (("balanced_accuracy", "attack_accuracy"), ("auc", "auc_score")):
        values = [s[field] for s in scores.values() if not math.isnan(s[field])]
        out[metric] = max(values) if values else float("nan")
    return out


register_attack(
    AttackInfo(
        key="duddu_cikm_2022",
        code="P2",
        name="Attribute inference from model outputs (Duddu & Boutet 2022)",
        risk="attribute_inference",
        cls=DudduCIKM2022,
        params=DudduCIKM2022Params,
        threat_model=ThreatModel(
            knowledge="black-box: the target's output logits",
            data="the adversary's own records with their sensitive attributes, disjoint from the training set",
            budget="one query per record",
            goal="infer the sensitive attributes of the training records (not among the model's inputs)",
        ),
        run=run_duddu_cikm_2022,
        summary="An MLP per sensitive attribute maps the target's outputs to the attribute; G-mean threshold.",
        reference="V. Duddu, A. Boutet. Inferring Sensitive Attributes from Model Explanations. CIKM 2022.",
    )
)

register_metric(
    MetricInfo(
        key="evaluate_attribute_inference",
        name="Attribute inference accuracy and AUC",
        risk="attribute_inference",
        func=evaluate_attribute_inference,
        summary="Balanced accuracy and ROC AUC of the inferred attributes, per attribute.",
    )
)
