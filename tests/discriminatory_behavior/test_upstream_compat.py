"""Upstream Amulet 0.6's constructor conventions for AdversarialDebiasing, on real census data.

Bad arguments are refused when the object is built, with a ``ValueError`` naming the parameter and its allowed
values; ``defenses.__all__`` lists the defenses only.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import amulet.discriminatory_behavior.defenses as defenses
from amulet.discriminatory_behavior.defenses import AdversarialDebiasing

from .conftest import census_factory


def _build(census, census_split, **overrides):
    train, test = census_split
    model = census_factory(census)()
    args = {
        "n_sensitive_attrs": train.z.shape[1],
        "n_classes": 2,
        "lambdas": torch.tensor([40.0] * train.z.shape[1]),  # upstream's census example
        "device": "cpu",
        "epochs": 1,
        **overrides,
    }
    return AdversarialDebiasing(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        train.loader(256, with_z=True),
        test.loader(256, with_z=True),
        **args,
    )


@pytest.mark.parametrize(
    ("overrides", "name", "allowed"),
    [
        ({"epochs": -1}, "epochs", "an int in the range [0, inf]"),
        ({"n_classes": 1}, "n_classes", "an int in the range [2, inf]"),
        ({"adversary_steps": 0}, "adversary_steps", "an int in the range [1, inf]"),
        ({"lambdas": [1.0, 2.0, 3.0]}, "lambdas", "non-negative"),
    ],
)
def test_bad_arguments_raise_at_construction(census, census_split, overrides, name, allowed):
    with pytest.raises(ValueError, match=f"'{name}' parameter of AdversarialDebiasing") as error:
        _build(census, census_split, **overrides)
    assert allowed in str(error.value)


def test_upstream_arguments_build_without_error(census, census_split):
    defense = _build(census, census_split)
    assert defense.epochs == 1 and defense.n_sensitive_attrs == census_split[0].z.shape[1]


def test_defenses_all_lists_defenses_only_and_helpers_stay_importable():
    assert defenses.__all__ == ["AdversarialDebiasing"]
    from amulet.discriminatory_behavior.defenses import (  # noqa: F401
        AdversaryModel,
        DiscriminatoryBehaviorDefense,
        debiasing_loop,
        train_debiased,
    )
