"""Attribute inference on real census data: sex is recoverable from a model that never saw it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from amulet import registry
from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.exceptions import NotApplicableError
from amulet.utils import TensorData


def test_census_features_exclude_sensitive_columns(census) -> None:
    assert census.sensitive_columns == ["race", "sex"]
    assert census.x_train.shape[1] == census.num_features
    for j in range(census.x_train.shape[1]):
        col = census.x_train[:, j]
        for i in range(2):
            z = census.z_train[:, i]
            assert not np.array_equal(col, z) and not np.array_equal(col, 1 - z), f"feature {j} is attribute {i}"


def test_sex_inferred_above_chance(census_p2_cell) -> None:
    ctx = census_p2_cell
    attack = DudduCIKM2022(
        ctx.target, ctx.adversary.x.numpy(), ctx.member.x.numpy(), ctx.adversary.z.numpy(), 1024, "cpu"
    )
    scores = evaluate_attribute_inference(ctx.member.z.numpy(), attack.attack())
    sex = ctx.dataset.sensitive_columns.index("sex")
    assert scores[sex]["attack_accuracy"] > 0.58, scores
    assert scores[sex]["auc_score"] > 0.62, scores


def test_registered_adapter(census_p2_cell) -> None:
    info = registry.get_attack("duddu_cikm_2022")
    assert info.risk == "attribute_inference" and info.cls is DudduCIKM2022
    out = info.run(census_p2_cell, info.params(max_iter=100, max_adversary_rows=2000, max_target_rows=2000))
    for key in registry.get_risk("attribute_inference").headline_metrics:
        assert key.key in out and math.isfinite(out[key.key])
    assert out["balanced_accuracy"] == max(out["balanced_accuracy_race"], out["balanced_accuracy_sex"])
    assert out["auc"] == max(out["auc_race"], out["auc_sex"])
    assert out["balanced_accuracy_sex"] > 0.55


def test_adapter_not_applicable_without_sensitive_attributes(census_p2_cell) -> None:
    ctx = census_p2_cell
    bare = dataclasses.replace(
        ctx,
        dataset=dataclasses.replace(ctx.dataset, sensitive_columns=None),
        member=TensorData(ctx.member.x, ctx.member.y),
        adversary=TensorData(ctx.adversary.x, ctx.adversary.y),
    )
    info = registry.get_attack("duddu_cikm_2022")
    with pytest.raises(NotApplicableError, match="sensitive attributes"):
        info.run(bare, info.params())
