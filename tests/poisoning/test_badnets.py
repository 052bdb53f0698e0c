"""BadNets: exact triggers, exact counts, determinism, validation, and a working backdoor on Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models import LinearNet
from amulet.poisoning.attacks import BadNets
from amulet.poisoning.metrics import backdoor_success_rate
from amulet.utils import TensorData, TrainConfig, get_accuracy, seeded_init, train_model


def _images(n=50, channels=3, size=8):
    gen = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(n, channels, size, size, generator=gen)  # no pixel is 0 before poisoning
    y = torch.arange(n) % 4
    return TensorDataset(x, y)


def test_image_trigger_is_the_exact_2x2_square_in_every_channel():
    data = _images()
    attack = BadNets(trigger_label=1, portion=0.5, random_seed=3)
    poisoned = attack.poison_train(data)
    x, y = data.tensors
    px, py = poisoned.tensors
    idx = attack.poisoned_indices_
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[5:7, 5:7] = True  # rows/cols H-3..H-2 and W-3..W-2 of an 8x8 image
    assert (px[idx][..., mask] == 0).all()
    assert torch.equal(px[idx][..., ~mask], x[idx][..., ~mask])
    clean = torch.ones(len(x), dtype=torch.bool)
    clean[idx] = False
    assert torch.equal(px[clean], x[clean]) and torch.equal(py[clean], y[clean])
    assert (py[idx] == 1).all()


def test_exact_count_only_non_target_rows_and_determinism():
    data = _images(n=103)
    y = data.tensors[1]
    n_candidates = int((y != 2).sum())
    first = BadNets(2, 0.3, 11)
    a = first.poison_train(data)
    assert len(first.poisoned_indices_) == min(int(103 * 0.3), n_candidates) == 30  # a share of all rows
    assert (y[first.poisoned_indices_] != 2).all()
    assert len(a) == len(data)
    again = BadNets(2, 0.3, 11)
    b = again.poison_train(data)
    assert torch.equal(first.poisoned_indices_, again.poisoned_indices_)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    other = BadNets(2, 0.3, 12)
    other.poison_train(data)
    assert not torch.equal(first.poisoned_indices_, other.poisoned_indices_)


def test_poison_test_triggers_every_non_target_row():
    data = _images(n=40)
    out = BadNets(0, 0.1, 0).poison_test(data)
    x, y = data.tensors
    assert len(out) == int((y != 0).sum())
    assert (out.tensors[1] == 0).all()
    assert (out.tensors[0][..., 5:7, 5:7] == 0).all()
    assert torch.equal(out.tensors[0][..., :5, :], x[y != 0][..., :5, :])


@pytest.mark.parametrize(("width", "n_trigger"), [(97, 19), (10, 2), (3, 1)])
def test_tabular_trigger_zeroes_the_last_fifth_of_the_features(width, n_trigger):
    data = TensorData(torch.full((20, width), 5.0), torch.arange(20) % 2)
    out = BadNets(1, 1.0, 0, "tabular").poison_test(data)
    assert (out.tensors[0][:, width - n_trigger :] == 0).all()
    assert (out.tensors[0][:, : width - n_trigger] == 5).all()


def test_trigger_value_option_and_3d_images():
    x = torch.rand(6, 10, 10) * 0.5
    out = BadNets(0, 1.0, 0, trigger_value=1.0).poison_train(TensorDataset(x, torch.ones(6, dtype=torch.long)))
    assert (out.tensors[0][:, 7:9, 7:9] == 1).all()


@pytest.mark.parametrize(
    ("kwargs", "name", "value"),
    [
        ({"portion": 0.0}, "portion", 0.0),
        ({"portion": 1.5}, "portion", 1.5),
        ({"dataset_type": "img"}, "dataset_type", "img"),
        ({"trigger_label": -1}, "trigger_label", -1),
    ],
)
def test_bad_parameters_are_named(kwargs, name, value):
    args = {"trigger_label": 0, "portion": 0.1, "random_seed": 0, **kwargs}
    prefix = PARAM_MESSAGE.split("{expected}")[0].format(name=name, owner="BadNets")
    with pytest.raises(InvalidParameterError, match=prefix.replace("(", r"\(")) as err:
        BadNets(**args)  # refused at construction, as upstream's callers expect
    assert isinstance(err.value, ValueError)
    assert f"Got {value!r} instead" in str(err.value)


def _fmnist_model():
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[128, 64], batch_norm=False)


def test_fmnist_backdoor_succeeds_and_keeps_clean_accuracy(fmnist_tensors):
    train, test = fmnist_tensors
    config = TrainConfig(epochs=5, batch_size=128)
    clean_model = train_model(seeded_init(_fmnist_model, 0), train, config=config, seed=0)
    # Fashion-MNIST's bottom-right corner is black in 87% of images: a 0-valued trigger would be invisible there.
    attack = BadNets(0, 0.1, random_seed=0, trigger_value=1.0)
    poisoned = attack.poison_train(train)
    poisoned_model = train_model(seeded_init(_fmnist_model, 0), TensorData(*poisoned.tensors), config=config, seed=0)
    triggered = attack.poison_test(test)
    asr = backdoor_success_rate(poisoned_model, TensorData(*triggered.tensors).loader(1000), "cpu")
    clean_acc = get_accuracy(clean_model, test.loader(1000), "cpu")
    poisoned_acc = get_accuracy(poisoned_model, test.loader(1000), "cpu")
    assert asr > 90, asr
    assert abs(clean_acc - poisoned_acc) <= 3, (clean_acc, poisoned_acc)
    assert backdoor_success_rate(clean_model, TensorData(*triggered.tensors).loader(1000), "cpu") < 20


def _upstream_selection(y: torch.Tensor, trigger_label: int, portion: float, seed: int) -> list[int]:
    """The rows upstream Amulet 0.6 poisons: walk a seeded permutation of all N rows, taking non-trigger-label
    rows until ``int(N * portion)`` are taken or the permutation ends."""
    import numpy as np

    perm = np.random.default_rng(seed=seed).permutation(len(y))
    chosen: list[int] = []
    for idx in perm:
        if len(chosen) >= int(len(y) * portion):
            break
        if int(y[idx]) != trigger_label:
            chosen.append(int(idx))
    return sorted(chosen)


@pytest.mark.parametrize(("trigger_label", "portion"), [(1, 0.1), (0, 0.1), (1, 0.5)])
def test_census_portion_is_a_share_of_all_rows_as_upstream(census_tensors, trigger_label, portion):
    member, _, _ = census_tensors
    data = member.subset(torch.arange(1000))
    n_candidates = int((data.y != trigger_label).sum())
    attack = BadNets(trigger_label, portion, 7, "tabular")
    poisoned = attack.poison_train(data)
    assert len(attack.poisoned_indices_) == min(int(len(data) * portion), n_candidates)
    assert attack.poisoned_indices_.tolist() == _upstream_selection(data.y, trigger_label, portion, 7)
    assert int((poisoned.tensors[1] != data.y).sum()) == len(attack.poisoned_indices_)


def test_census_portion_is_capped_by_the_candidate_rows(census_tensors):
    member, _, _ = census_tensors
    data = member.subset(torch.arange(1000))
    majority = int(torch.mode(data.y).values)  # most census rows earn <=50K: few rows are candidates
    n_candidates = int((data.y != majority).sum())
    assert n_candidates < 0.9 * len(data)
    attack = BadNets(majority, 0.9, 0, "tabular")
    poisoned = attack.poison_train(data)
    assert len(attack.poisoned_indices_) == n_candidates
    assert bool((poisoned.tensors[1] == majority).all())


def test_upstream_attack_entry_point_dispatches_on_mode(census_tensors):
    member, _, test = census_tensors
    train, held_out = member.subset(torch.arange(300)), test.subset(torch.arange(200))
    attack = BadNets(1, 0.2, 3, "tabular")
    via_attack = attack.attack(train.dataset())
    direct = BadNets(1, 0.2, 3, "tabular").poison_train(train.dataset())
    assert all(torch.equal(a, b) for a, b in zip(via_attack.tensors, direct.tensors, strict=True))
    triggered = attack.attack(held_out.dataset(), mode="test")
    assert len(triggered) == int((held_out.y != 1).sum()) and bool((triggered.tensors[1] == 1).all())
    with pytest.raises(ValueError, match="mode must be 'train' or 'test'"):
        attack.attack(held_out.dataset(), mode="eval")
