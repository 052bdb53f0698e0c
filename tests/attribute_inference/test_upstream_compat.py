"""Upstream Amulet 0.6's constructor conventions for DudduCIKM2022, on real census data.

Bad arguments (including a non-binary or misaligned sensitive attribute) are refused when the object is built,
with a ``ValueError`` naming the parameter; the attribute-inference and data-reconstruction ``defenses``
export no names (upstream has no defense for either).
"""

from __future__ import annotations

import numpy as np
import pytest

import amulet.attribute_inference.defenses as ai_defenses
import amulet.data_reconstruction.defenses as dr_defenses
from amulet.attribute_inference.attacks import DudduCIKM2022


def _arrays(cell):
    x_adv, z_adv = cell.adversary.x[:500].numpy(), cell.adversary.z[:500].numpy()
    return x_adv, cell.test.x[:500].numpy(), z_adv


@pytest.mark.parametrize(
    ("change", "name", "allowed"),
    [
        ({"batch_size": 0}, "batch_size", "an int in the range [1, inf]"),
        ({"max_iter": 0}, "max_iter", "an int in the range [1, inf]"),
        ({"z": "non_binary"}, "z_train_adv", "binary (0/1)"),
        ({"z": "short"}, "z_train_adv", "one row per row of x_train_adv"),
    ],
)
def test_bad_arguments_raise_at_construction(census_p2_cell, change, name, allowed):
    x_adv, x_test, z_adv = _arrays(census_p2_cell)
    if change.get("z") == "non_binary":
        z_adv = z_adv.copy()
        z_adv[:10, 0] = 2
    elif change.get("z") == "short":
        z_adv = z_adv[:-1]
    kwargs = {k: v for k, v in change.items() if k != "z"}
    batch_size = kwargs.pop("batch_size", 128)
    with pytest.raises(ValueError, match=f"'{name}' parameter of DudduCIKM2022") as error:
        DudduCIKM2022(census_p2_cell.target, x_adv, x_test, z_adv, batch_size, "cpu", **kwargs)
    assert allowed in str(error.value)


def test_upstream_arguments_attack_census(census_p2_cell):
    x_adv, x_test, z_adv = _arrays(census_p2_cell)
    out = DudduCIKM2022(census_p2_cell.target, x_adv, x_test, z_adv, 128, "cpu", max_iter=50).attack()
    assert sorted(out) == list(range(z_adv.shape[1]))
    assert all(len(out[i]["confidence_values"]) == len(x_test) for i in out)
    assert all(np.isin(out[i]["predictions"], (0, 1)).all() for i in out)


def test_defenses_export_no_names():
    assert ai_defenses.__all__ == []
    assert dr_defenses.__all__ == []
