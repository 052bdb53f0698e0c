"""``amulet.utils``, ``amulet.datasets`` and ``amulet.models`` called as upstream Amulet 0.6.0 documents them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from compat_helpers import DEVICE, loader
from torch.utils.data import Subset

from amulet.datasets import AmuletDataset
from amulet.utils import (
    DEFAULT_CAPACITY_MAP,
    create_dir,
    get_accuracy,
    get_intermediate_features,
    initialize_model,
    load_data,
    load_or_train,
    stratified_split,
    train_classifier,
)

# ---------------------------------------------------------------------------------------------- load_data


def test_load_data_returns_upstreams_dataset_fields(census_small) -> None:
    assert isinstance(census_small, AmuletDataset)
    data: Any = census_small
    for name in ("train_set", "test_set", "x_train", "x_test", "y_train", "y_test", "z_train", "z_test"):
        assert getattr(data, name) is not None, name
    assert data.num_classes == 2
    assert data.num_features == data.x_train.shape[1]
    assert data.sensitive_columns == ["race", "sex"]
    assert data.modality == "tabular"  # upstream's poisoning example passes it as BadNets' dataset_type
    assert len(data.train_set) == len(data.x_train) == len(data.y_train) == len(data.z_train)
    assert len(data.test_set) == len(data.x_test) == len(data.y_test) == len(data.z_test)
    x, y = data.train_set[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.issubdtype(data.x_train.dtype, np.floating)
    assert set(np.unique(data.z_train)) <= {0, 1}


def test_census_encoding_is_upstreams(upstream_root: Path) -> None:
    """Numeric columns min-max scaled into [0, 1] on the training split; each one-hot block loses its first
    category (pandas ``get_dummies(drop_first=True)``), so the rows of that category have an all-zero block."""
    full = load_data(upstream_root, "census")
    x = full.x_train
    assert x.min() >= 0.0 and x.max() <= 1.0, (x.min(), x.max())
    names = full.feature_names
    assert names is not None and len(names) == x.shape[1]
    assert "age" in names and "hours-per-week" in names
    age = x[:, names.index("age")]
    # min-max on the training split: both ends are reached
    assert age.min() == 0.0 and age.max() == 1.0, (age.min(), age.max())
    blocks: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        for column in ("workclass", "education", "marital-status", "occupation", "relationship", "native-country"):
            # feature_names is ours (upstream has none); accept either "col_value" or "col=value"
            if name.startswith((column + "_", column + "=")):
                blocks.setdefault(column, []).append(i)
    assert set(blocks) == {
        "workclass",
        "education",
        "marital-status",
        "occupation",
        "relationship",
        "native-country",
    }, sorted(blocks)
    for column, index in blocks.items():
        sums = x[:, index].sum(axis=1)
        assert sums.max() <= 1.0 + 1e-6, column
        assert (sums == 0).any(), f"{column}: every row has a category set, so the first one was not dropped"
    assert "race" not in names and "sex" not in names  # the sensitive columns live in z only


def test_load_data_training_size_and_test_size_subsample(upstream_root: Path) -> None:
    full = load_data(upstream_root, "census")
    part = load_data(upstream_root, "census", training_size=0.1, test_size=0.2)
    assert abs(len(part.train_set) - 0.1 * len(full.train_set)) <= 1
    assert abs(len(part.test_set) - 0.2 * len(full.test_set)) <= 1
    again = load_data(upstream_root, "census", training_size=0.1, test_size=0.2)
    np.testing.assert_array_equal(part.x_test, again.x_test)


def test_load_data_rejects_a_test_size_that_leaves_fewer_than_two_rows(upstream_root: Path) -> None:
    with pytest.raises(ValueError, match="test_size"):
        load_data(upstream_root, "census", test_size=1e-6)


def test_load_data_accepts_a_logger_positionally(upstream_root: Path, caplog) -> None:
    log = logging.getLogger("All")
    with caplog.at_level(logging.INFO, logger="All"):
        data = load_data(upstream_root, "census", 0.01, log)
    assert len(data.train_set) > 0


def test_fmnist_images_are_channels_first_floats(fmnist_small_compat) -> None:
    data = fmnist_small_compat
    x, y = data.train_set[0]
    assert tuple(x.shape) == (1, 28, 28) and x.dtype == torch.float32
    assert int(y) in range(10)
    assert data.num_classes == 10 and data.modality == "image"
    xs = torch.stack([data.test_set[i][0] for i in range(50)])
    assert float(xs.min()) >= 0.0 and float(xs.max()) <= 1.0


# ------------------------------------------------------------------------------------------ initialize_model


def test_default_capacity_map_has_upstreams_shape() -> None:
    assert set(DEFAULT_CAPACITY_MAP) == {"m1", "m2", "m3", "m4"}
    for capacity, config in DEFAULT_CAPACITY_MAP.items():
        assert set(config) == {"vgg", "linearnet", "resnet", "cnn"}, capacity
        assert isinstance(config["resnet"], str) and config["resnet"].startswith("resnet")
        assert all(isinstance(width, int) for width in config["linearnet"])
        assert set(config["cnn"]) == {"conv_layers", "fc_layers"}
    assert DEFAULT_CAPACITY_MAP["m1"]["linearnet"] == [128, 256, 128]
    assert DEFAULT_CAPACITY_MAP["m1"]["resnet"] == "resnet34"
    # VGG11's layer list
    assert DEFAULT_CAPACITY_MAP["m1"]["vgg"] == [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def test_initialize_model_positional_and_batch_norm_flag(census_small) -> None:
    model = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes, None)
    out = model(torch.from_numpy(census_small.x_test[:5]).float())
    assert out.shape == (5, 2)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    plain = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes, batch_norm=False)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules())


def test_initialize_model_reads_an_upstream_shaped_model_conf(census_small) -> None:
    conf = {"tiny": {"linearnet": [8, 4]}}
    model = initialize_model("linearnet", "tiny", census_small.num_features, 2, model_conf=conf)
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [8, 4, 2]


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_image_architectures_take_their_channels_from_the_data(arch: str) -> None:
    """Upstream's CIFAR scripts pass ``data.num_features`` (H*W = 1024 for CIFAR-10); the image
    architectures ignore it and read 3-channel 32x32 images."""
    torch.manual_seed(0)
    model = initialize_model(arch, "m1", 32 * 32, 10).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_cnn_on_fmnist_shaped_images(fmnist_small_compat) -> None:
    model = initialize_model("cnn", "m1", fmnist_small_compat.num_features, 10).eval()
    x = torch.stack([fmnist_small_compat.test_set[i][0] for i in range(4)])
    assert model(x).shape == (4, 10)


def test_initialize_model_unknown_architecture_raises_value_error() -> None:
    with pytest.raises(ValueError, match="Incorrect model architecture: transformer"):
        initialize_model("transformer", "m1", 10, 2)


def test_initialize_model_unknown_capacity_raises_key_error() -> None:
    with pytest.raises(KeyError, match="Capacity 'm9' not found in model_conf"):
        initialize_model("linearnet", "m9", 10, 2)


# ------------------------------------------------------------------------------ training / evaluation helpers


def test_train_classifier_and_get_accuracy(census_small) -> None:
    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    trained = train_classifier(model, loader(census_small.train_set), criterion, optimizer, 2, DEVICE)
    assert isinstance(trained, torch.nn.Module)
    accuracy = get_accuracy(trained, loader(census_small.test_set), DEVICE)
    # upstream reports accuracy in percent; a trained census model beats the 76 % majority rate
    assert 76.0 < accuracy <= 100.0, accuracy


def test_get_intermediate_features_returns_features_targets_inputs(census_small, census_target) -> None:
    features, targets, inputs = get_intermediate_features(census_target, loader(census_small.test_set), DEVICE)
    n = len(census_small.test_set)
    assert features.shape[0] == targets.shape[0] == inputs.shape[0] == n
    np.testing.assert_array_equal(targets, census_small.y_test)
    np.testing.assert_allclose(inputs, census_small.x_test, atol=1e-6)


def test_create_dir_and_load_or_train(tmp_path: Path, census_small) -> None:
    models = create_dir(tmp_path / "saved_models" / "target", logging.getLogger("All"))
    assert models.is_dir()
    path = models / "census_linearnet_m1.pt"
    calls: list[int] = []

    def init():
        torch.manual_seed(len(calls) + 10)
        return initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)

    def train(model):
        calls.append(1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return train_classifier(
            model, loader(census_small.train_set), torch.nn.CrossEntropyLoss(), optimizer, 1, DEVICE
        )

    first = load_or_train(path, init, train, None, "target model")
    assert path.exists() and calls == [1]
    second = load_or_train(path, init, train, None, "target model")
    assert calls == [1], "the second call must load the saved model, not train again"
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_stratified_split(census_small) -> None:
    first, second = stratified_split(census_small.train_set, 0.5, seed=0)
    assert isinstance(first, Subset) and isinstance(second, Subset)
    assert len(first) + len(second) == len(census_small.train_set)
    rate = census_small.y_train.mean()
    first_rate = np.mean([int(first[i][1]) for i in range(len(first))])
    assert abs(first_rate - rate) < 0.01


# ---------------------------------------------------------------------------------------------------- models


def test_model_classes_take_upstreams_keywords() -> None:
    from amulet.models import VGG, AmuletModel, LinearNet, ResNet, SimpleCNN

    torch.manual_seed(0)
    cifar = torch.rand(2, 3, 32, 32)
    gray = torch.rand(2, 1, 28, 28)
    vgg = VGG(num_classes=10, layer_config=DEFAULT_CAPACITY_MAP["m1"]["vgg"], batch_norm=True).eval()
    assert vgg(cifar).shape == (2, 10)
    resnet = ResNet(size="resnet18", num_classes=10, replace_first=True).eval()
    assert resnet(cifar).shape == (2, 10)
    cnn = SimpleCNN(conv_channels_kernel=[(20, 5), (50, 5)], fc_layers=[500], num_classes=10, input_channels=1)
    assert cnn.eval()(gray).shape == (2, 10)
    assert cnn.get_hidden(gray).shape[0] == 2
    net = LinearNet(num_features=93, num_classes=2, hidden_layer_sizes=[128, 256, 128], batch_norm=True).eval()
    assert net(torch.rand(3, 93)).shape == (3, 2)
    assert net.get_hidden(torch.rand(3, 93)).shape[0] == 3
    assert all(isinstance(m, AmuletModel) for m in (vgg, resnet, cnn, net))


def test_load_census_directly_with_upstreams_arguments(upstream_root: Path) -> None:
    from amulet.datasets import load_census

    data = load_census(upstream_root / "data" / "census", 7, 0.5)
    assert data.num_features == 93 and data.num_classes == 2
    assert data.sensitive_columns == ["race", "sex"]
    assert abs(len(data.train_set) - len(data.test_set)) <= 1
