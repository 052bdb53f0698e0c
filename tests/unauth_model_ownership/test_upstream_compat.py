"""Upstream Amulet 0.6's constructor conventions for model-ownership classes, on real census data.

Bad arguments are refused when the object is built (upstream's ``ModelExtraction`` raises in ``__init__``), with
a ``ValueError`` naming the parameter and its allowed values; upstream's positional argument order works.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import amulet.unauth_model_ownership.defenses as defenses
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import DatasetInference, WatermarkNN

from .conftest import census_factory


def _surrogate(member) -> nn.Module:
    torch.manual_seed(0)  # test-only: an untrained surrogate of the target's architecture
    return census_factory(member.x.shape[1])


def test_model_extraction_bogus_loss_type_raises_in_init(census_split, census_target):
    member, adversary, _ = census_split
    surrogate = _surrogate(member)
    with pytest.raises(ValueError, match="'loss_type' parameter of ModelExtraction must be one of") as error:
        ModelExtraction(
            census_target, surrogate, torch.optim.Adam(surrogate.parameters()), adversary.loader(64), "cpu", 1, "bogus"
        )
    assert "{'ce', 'kl', 'mse'}" in str(error.value) and "'bogus'" in str(error.value)


def test_model_extraction_loss_type_is_case_insensitive_as_upstream(census_split, census_target):
    member, adversary, test = census_split
    surrogate = _surrogate(member)
    optimizer = torch.optim.Adam(surrogate.parameters(), lr=1e-3)
    attack = ModelExtraction(census_target, surrogate, optimizer, adversary.loader(128), "cpu", 2, "CE")
    assert attack.loss_type == "ce"
    stolen = attack.attack()
    with torch.no_grad():
        agreement = (stolen(test.x).argmax(1) == census_target(test.x).argmax(1)).float().mean()
    assert float(agreement) > 0.8


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"epochs": -1}, "epochs", "an int in the range [0, inf]"),
        ({"gray": "no"}, "gray", "an instance of bool"),
        ({"num_classes": 1}, "num_classes", "an int in the range [2, inf]"),
    ],
)
def test_watermark_bad_arguments_raise_at_construction(census_split, census_target, kwargs, name, allowed):
    member, _, _ = census_split
    with pytest.raises(ValueError, match=f"'{name}' parameter of WatermarkNN") as error:
        WatermarkNN(
            census_target,
            nn.CrossEntropyLoss(),
            torch.optim.Adam(census_target.parameters()),
            member.loader(128),
            "cpu",
            tabular=True,
            **kwargs,
        )
    assert allowed in str(error.value)


def test_watermark_takes_upstreams_positional_arguments(census_split, census_target):
    member, _, _ = census_split
    # upstream: (target_model, criterion, optimizer, train_loader, device, wm_path, gray, tabular, epochs, batch_size)
    defense = WatermarkNN(
        census_target,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(census_target.parameters()),
        member.loader(128),
        "cpu",
        None,
        False,
        True,
        3,
        64,
    )
    assert (defense.epochs, defense.batch_size, defense.tabular, defense.num_classes) == (3, 64, True, 2)
    # upstream builds the trigger loader in __init__: it is there before watermark() or verify()
    x, y = defense.wm_loader.dataset.tensors
    assert defense.wm_loader.batch_size == 64 and x.shape == (100, member.x.shape[1])
    assert set(y.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"dataset": "3D"}, "dataset", "one of {'1D', '2D'}"),
        ({"regressor_embed": 2}, "regressor_embed", "one of {0, 1}"),
        ({"num_iter": 0}, "num_iter", "an int in the range [1, inf]"),
    ],
)
def test_dataset_inference_bad_arguments_raise_at_construction(census_split, census_target, kwargs, name, allowed):
    member, _, test = census_split
    args = {"dataset": "1D", **kwargs}
    with pytest.raises(ValueError, match=f"'{name}' parameter of DatasetInference") as error:
        DatasetInference(census_target, census_target, member.loader(128), test.loader(128), 2, "cpu", **args)
    assert allowed in str(error.value)


def test_defenses_all_lists_defenses_only_and_helpers_stay_importable():
    assert defenses.__all__ == ["DatasetInference", "WatermarkNN"]
    from amulet.unauth_model_ownership.defenses import (  # noqa: F401
        FingerprintDefense,
        WatermarkDefense,
        embed_watermark,
        generate_trigger_set,
        load_trigger_folder,
        mingd_distances,
    )
