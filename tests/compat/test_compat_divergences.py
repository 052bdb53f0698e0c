"""The deliberate divergences from upstream Amulet 0.6.0 listed in docs/upstream-compat.md, each checked.

(DP-SGD's plain module and the missing SSIM on tables are checked in ``test_compat_privacy.py``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compat_helpers import DEVICE, loader
from torch.utils.data import TensorDataset

from amulet.evasion.attacks import EvasionPGD
from amulet.membership_inference.attacks import LiRA
from amulet.utils import load_data


def test_pgd_refuses_inputs_outside_its_clip_range(census_small, census_target) -> None:
    x, y = (t[:64] for t in census_small.test_set.tensors)
    scaled = loader(TensorDataset(x * 2.0, y))  # a mis-scaled copy: features in [0, 2]
    with pytest.raises(ValueError, match="clip_max"):
        EvasionPGD(census_target, scaled, DEVICE, 64, 0.1).attack()


def test_lira_leaves_the_callers_random_generators_alone(census_small, census_target, tmp_path: Path) -> None:
    train_set = TensorDataset(*(t[:64] for t in census_small.train_set.tensors))
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    LiRA(
        census_target, np.arange(32), "linearnet", "m1", train_set, "census", census_small.num_features,
        census_small.num_classes, 32, 0.5, torch.nn.CrossEntropyLoss(), 2, 1, DEVICE, tmp_path, 5,
    )  # fmt: skip
    torch.testing.assert_close(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_numpy)


def test_load_data_subsamples_the_arrays_and_the_dataset_alike(upstream_root: Path) -> None:
    data = load_data(upstream_root, "census", 0.03, None, 4)
    x, y = data.train_set.tensors
    np.testing.assert_allclose(x.numpy(), data.x_train.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), data.y_train)


def test_load_data_unknown_dataset_raises_instead_of_exiting(upstream_root: Path) -> None:
    with pytest.raises(ValueError, match="dataset"):
        load_data(upstream_root, "imagenet")
