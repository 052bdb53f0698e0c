"""WatermarkNN: generated trigger sets verify on the watermarked model, not on a clean one (images and tabular)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from amulet.models import LinearNet, SimpleCNN
from amulet.unauth_model_ownership.defenses import WatermarkNN, generate_trigger_set, load_trigger_folder
from amulet.utils import TensorData, TrainConfig, get_accuracy, seeded_init, train_model

from .conftest import census_factory


def test_trigger_set_is_seeded_valid_and_in_range():
    a = generate_trigger_set((3, 8, 8), 2, n_samples=50, seed=4)
    b = generate_trigger_set((3, 8, 8), 2, n_samples=50, seed=4)
    c = generate_trigger_set((3, 8, 8), 2, n_samples=50, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (50, 3, 8, 8) and a.x.min() >= 0 and a.x.max() <= 1
    assert set(a.y.tolist()) == {0, 1}, "labels must be valid for a 2-class model and not all one class"
    tab = generate_trigger_set((12,), 5, n_samples=200, seed=0, value_range=(-1.0, 2.0))
    assert tab.x.min() >= -1 and tab.x.max() <= 2 and set(tab.y.tolist()) == set(range(5))


def _two_class_fmnist(fmnist_small):
    x, y = fmnist_small.x_train, fmnist_small.y_train
    keep = np.isin(y, [0, 1])  # T-shirt vs trouser
    return TensorData.from_numpy(x[keep][:1000], (y[keep][:1000] == 1).astype(np.int64))


def test_two_class_image_model_verifies_and_a_clean_one_does_not(fmnist_small):
    data = _two_class_fmnist(fmnist_small)
    config = TrainConfig(epochs=2, batch_size=64)
    factory = lambda: SimpleCNN([(8, 3)], [32], num_classes=2)  # noqa: E731
    clean = train_model(seeded_init(factory, 0), data, config=config, seed=0)
    model = train_model(seeded_init(factory, 0), data, config=config, seed=0)
    defense = WatermarkNN(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=3e-3),
        data.loader(64, shuffle=True, seed=0),
        "cpu",
        num_classes=2,
        epochs=6,
        seed=7,
    )
    watermarked = defense.watermark()
    assert defense.verify(watermarked)
    assert defense.watermark_accuracy_ > 90
    assert not defense.verify(clean)
    assert defense.watermark_accuracy_ < 80
    assert get_accuracy(watermarked, data.loader(500), "cpu") > 90


def test_tabular_census_model_verifies_and_a_clean_one_does_not(census_split, census_target):
    member, _, test = census_split
    model = train_model(
        seeded_init(lambda: census_factory(member.x.shape[1]), 0), member, config=TrainConfig(epochs=5), seed=0
    )
    defense = WatermarkNN(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        member.loader(256, shuffle=True, seed=0),
        "cpu",
        tabular=True,
        num_classes=2,
        epochs=8,
        seed=3,
    )
    watermarked = defense.watermark()
    assert defense.verify(watermarked), defense.watermark_accuracy_
    assert not defense.verify(census_target)
    assert (
        get_accuracy(watermarked, test.loader(1000), "cpu") > get_accuracy(census_target, test.loader(1000), "cpu") - 3
    )


@pytest.mark.parametrize("header", [True, False])
def test_user_trigger_folder_keeps_every_row_and_scales_to_unit_range(tmp_path, header):
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(5):
        pixels = np.full((10, 12, 3), 51 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / f"{i}.png")
        rows.append(f"{i}.png,{i % 2}")
    (tmp_path / "labels.csv").write_text(("file,label\n" if header else "") + "\n".join(rows) + "\n")
    triggers = load_trigger_folder(tmp_path, (1, 8, 8))
    assert triggers.x.shape == (5, 1, 8, 8), "the first row must not be lost"
    assert triggers.y.tolist() == [0, 1, 0, 1, 0]
    assert triggers.x.min() >= 0 and triggers.x.max() <= 1
    assert float(triggers.x[4].mean()) == pytest.approx(204 / 255, abs=0.01)


def test_wm_path_is_used_by_get_wm_loader(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "labels.csv").write_text("0.png,1\n1.png,0\n2.png,1\n")
    model = LinearNet(36, 2, hidden_layer_sizes=[4])
    loader = TensorData(torch.rand(8, 1, 6, 6), torch.zeros(8, dtype=torch.long)).loader(4)
    defense = WatermarkNN(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), 0.1),
        loader,
        "cpu",
        wm_path=str(tmp_path),
        gray=True,
    )
    wm_loader = defense.get_wm_loader()
    assert len(wm_loader.dataset) == 3
    assert wm_loader.dataset.tensors[0].shape == (3, 1, 6, 6)
