"""``initialize_model``: every architecture x capacity of the default map, shapes, and argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.models import VGG, LinearNet, ResNet, SimpleCNN
from amulet.utils import DEFAULT_CAPACITY_MAP, initialize_model, seeded_init

CAPACITIES = ("m1", "m2", "m3", "m4")


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_linearnet_capacities(capacity):
    model = initialize_model("linearnet", capacity, 108, 2, batch_norm=False)
    assert isinstance(model, LinearNet)
    assert model.hidden_layer_sizes == DEFAULT_CAPACITY_MAP["linearnet"][capacity]
    assert not model.batch_norm
    assert model.eval()(torch.zeros(3, 108)).shape == (3, 2)


@pytest.mark.parametrize("arch", ["cnn", "simplecnn"])
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_cnn_capacities_on_fmnist_shape(arch, capacity):
    model = initialize_model(arch, capacity, 784, 10, batch_norm=False)
    assert isinstance(model, SimpleCNN)
    conf = DEFAULT_CAPACITY_MAP["cnn"][capacity]
    assert model.conv_channels_kernel == [tuple(p) for p in conf["conv_channels_kernel"]]
    assert model.fc_layers == conf["fc_layers"]
    assert model.input_channels == 1 and model.input_size == (28, 28)
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("capacity", "n_convs"), [("m1", 8), ("m2", 10), ("m3", 13), ("m4", 16)])
def test_vgg_capacities_are_vgg11_to_19(capacity, n_convs):
    model = initialize_model("vgg", capacity, (1, 28, 28), 10)
    assert isinstance(model, VGG)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == n_convs
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_resnet_m1_is_resnet34():
    model = initialize_model("resnet", "m1", 3, 10)
    assert isinstance(model, ResNet) and model.size == "resnet34" and model.replace_first
    assert model.eval()(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    assert [DEFAULT_CAPACITY_MAP["resnet"][c] for c in CAPACITIES] == ["resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.slow
@pytest.mark.parametrize("capacity", ["m2", "m3", "m4"])
def test_resnet_large_capacities(capacity):
    model = initialize_model("resnet", capacity, 3, 10, resnet_replace_first=False)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("num_features", "input_shape", "expected"),
    [
        (1, None, (1, 28, 28)),
        (3, None, (3, 28, 28)),
        (784, None, (1, 28, 28)),
        (3072, None, (3, 32, 32)),
        ((3, 64, 48), None, (3, 64, 48)),
        (784, (1, 32, 32), (1, 32, 32)),
    ],
)
def test_image_num_features_means_channels_or_shape(num_features, input_shape, expected):
    model = initialize_model("cnn", "m1", num_features, 10, input_shape=input_shape)
    assert (model.input_channels, *model.input_size) == expected


def test_same_seed_same_model():
    a = seeded_init(lambda: initialize_model("linearnet", "m1", 20, 2), 3)
    b = seeded_init(lambda: initialize_model("linearnet", "m1", 20, 2), 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter"),
    [
        (("mlp", "m1", 10, 2), {}, "model_arch"),
        (("vgg", "m5", 3, 2), {}, "model_capacity"),
        (("vgg", "m1", 1000, 2), {}, "num_features"),
        (("cnn", "m1", 1, 2), {"input_shape": (0, 28, 28)}, "input_shape"),
        (("linearnet", "m1", 10, 2), {"input_shape": (3, 4)}, "input_shape"),
        (("linearnet", "m1", 10, 0), {}, "num_classes"),
    ],
)
def test_bad_arguments_name_the_parameter(args, kwargs, parameter):
    with pytest.raises(InvalidParameterError, match=f"'{parameter}'"):
        initialize_model(*args, **kwargs)


def test_custom_capacity_map_and_logger(caplog):
    import logging

    conf = {"linearnet": {"tiny": [4]}}
    with caplog.at_level(logging.INFO, logger="amulet.utils._models"):
        model = initialize_model("linearnet", "tiny", 6, 2, model_conf=conf)
    assert model.hidden_layer_sizes == [4]
    assert "Model initialized" in caplog.text
    with pytest.raises(InvalidParameterError, match="'model_arch'"):
        initialize_model("vgg", "m1", 3, 2, model_conf=conf)
