"""``initialize_model``: upstream's capacity map and channels, every architecture x capacity, and argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.models import VGG, LinearNet, ResNet, SimpleCNN
from amulet.utils import DEFAULT_CAPACITY_MAP, initialize_model, seeded_init
from amulet.utils._models import CAPACITY_CONFIG, CapacityError

CAPACITIES = ("m1", "m2", "m3", "m4")
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def test_default_capacity_map_has_upstreams_shape():
    """{capacity: {arch: config}}, with upstream 0.6.0's values (VGG as layer lists, cnn conv_layers as tuples)."""
    assert list(DEFAULT_CAPACITY_MAP) == list(CAPACITIES)
    for capacity in CAPACITIES:
        assert set(DEFAULT_CAPACITY_MAP[capacity]) == {"vgg", "linearnet", "resnet", "cnn"}
    assert DEFAULT_CAPACITY_MAP["m1"]["vgg"] == VGG11 and DEFAULT_CAPACITY_MAP["m4"]["vgg"] == VGG19
    assert [DEFAULT_CAPACITY_MAP[c]["resnet"] for c in CAPACITIES] == ["resnet34", "resnet50", "resnet101", "resnet152"]
    assert DEFAULT_CAPACITY_MAP["m2"]["linearnet"] == [256, 512, 256]
    assert DEFAULT_CAPACITY_MAP["m4"]["cnn"] == {"conv_layers": [(32, 5), (64, 5), (128, 3)], "fc_layers": [1024, 512]}
    # the engine's form (registry config fields) is the same capacities
    assert CAPACITY_CONFIG["vgg"]["m1"] == {"layer_config": "VGG11"}
    assert CAPACITY_CONFIG["simplecnn"]["m1"]["conv_channels_kernel"] == [[12, 5], [24, 5]]


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_linearnet_capacities(capacity):
    model = initialize_model("linearnet", capacity, 108, 2, batch_norm=False)
    assert isinstance(model, LinearNet)
    assert model.hidden_layer_sizes == DEFAULT_CAPACITY_MAP[capacity]["linearnet"]
    assert not model.batch_norm
    assert model.eval()(torch.zeros(3, 108)).shape == (3, 2)


@pytest.mark.parametrize("arch", ["cnn", "simplecnn"])
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_cnn_capacities_on_fmnist_shape(arch, capacity):
    model = initialize_model(arch, capacity, 28 * 28, 10)
    assert isinstance(model, SimpleCNN)
    conf = DEFAULT_CAPACITY_MAP[capacity]["cnn"]
    assert model.conv_channels_kernel == conf["conv_layers"]
    assert model.fc_layers == conf["fc_layers"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # upstream's SimpleCNN has none
    assert model.input_channels == 1 and model.input_size == (28, 28)
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("capacity", "n_convs"), [("m1", 8), ("m2", 10), ("m3", 13), ("m4", 16)])
def test_vgg_capacities_are_vgg11_to_19(capacity, n_convs):
    model = initialize_model("vgg", capacity, (1, 28, 28), 10)
    assert isinstance(model, VGG)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == n_convs
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_cifar_with_upstreams_num_features_takes_three_channels(arch):
    """Upstream's CIFAR loaders give num_features = 32 * 32 and its VGG/ResNet are built for 3 channels:
    the CIFAR example scripts must run (they crashed with "expected ... 1 channels, but got 3")."""
    model = initialize_model(arch, "m1", 32 * 32, 10)
    assert model.input_channels == 3
    x = torch.rand(4, 3, 32, 32)  # a CIFAR-shaped batch
    assert model.eval()(x).shape == (4, 10)
    loss = nn.functional.cross_entropy(model.train()(x), torch.arange(4))
    loss.backward()  # trains
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_resnet_m1_is_resnet34():
    model = initialize_model("resnet", "m1", 3, 10)
    assert isinstance(model, ResNet) and model.size == "resnet34" and model.replace_first
    assert model.eval()(torch.zeros(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("capacity", ["m2", "m3", "m4"])
def test_resnet_large_capacities(capacity):
    model = initialize_model("resnet", capacity, 32 * 32, 10, resnet_replace_first=False)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("arch", "num_features", "input_shape", "expected_channels"),
    [
        ("cnn", 784, None, 1),
        ("cnn", 1024, None, 1),  # upstream's cnn is 1-channel whatever num_features says
        ("vgg", 784, None, 3),  # upstream's vgg is 3-channel whatever num_features says
        ("resnet", 1, None, 3),
        ("cnn", (3, 64, 48), None, 3),
        ("vgg", (1, 28, 28), None, 1),
        ("resnet", 1024, (1, 32, 32), 1),
        ("cnn", (32, 32), None, 1),
    ],
)
def test_an_int_gives_upstreams_channels_and_a_shape_any(arch, num_features, input_shape, expected_channels):
    model = initialize_model(arch, "m1", num_features, 10, input_shape=input_shape)
    assert model.input_channels == expected_channels


def test_cnn_shape_sets_its_input_size():
    model = initialize_model("cnn", "m1", (3, 64, 48), 10)
    assert model.input_size == (64, 48)
    assert model.eval()(torch.zeros(2, 3, 64, 48)).shape == (2, 10)


def test_same_seed_same_model():
    a = seeded_init(lambda: initialize_model("linearnet", "m1", 20, 2), 3)
    b = seeded_init(lambda: initialize_model("linearnet", "m1", 20, 2), 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_capacity_is_upstreams_key_error():
    with pytest.raises(KeyError, match="Capacity 'm5' not found in model_conf") as err:
        initialize_model("vgg", "m5", 32 * 32, 2)
    assert isinstance(err.value, InvalidParameterError) and "'model_capacity'" in str(err.value)
    # upstream checks the capacity first
    with pytest.raises(KeyError, match="Capacity 'm9' not found"):
        initialize_model("mlp", "m9", 10, 2)


def test_unknown_architecture_is_upstreams_value_error(caplog):
    import logging

    with (
        caplog.at_level(logging.ERROR, logger="amulet.utils._models"),
        pytest.raises(ValueError, match="Incorrect model architecture: mlp") as err,
    ):
        initialize_model("mlp", "m1", 10, 2)
    assert isinstance(err.value, InvalidParameterError) and "'model_arch'" in str(err.value)
    assert "Incorrect model architecture: mlp" in caplog.text  # logged, as upstream


def test_architecture_missing_from_a_capacity_is_upstreams_key_error():
    conf = {"tiny": {"linearnet": [4]}}
    with pytest.raises(KeyError, match="'vgg' config missing for capacity 'tiny'") as err:
        initialize_model("vgg", "tiny", 3, 2, model_conf=conf)
    assert isinstance(err.value, CapacityError)


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter"),
    [
        (("cnn", "m1", 1, 2), {"input_shape": (0, 28, 28)}, "input_shape"),
        (("vgg", "m1", (3, 32), 2), {"input_shape": (3, 32, 32, 1)}, "input_shape"),
        (("linearnet", "m1", 10, 2), {"input_shape": (3, 4)}, "input_shape"),
        (("linearnet", "m1", 10, 0), {}, "num_classes"),
    ],
)
def test_bad_arguments_name_the_parameter(args, kwargs, parameter):
    with pytest.raises(InvalidParameterError, match=f"'{parameter}'"):
        initialize_model(*args, **kwargs)


def test_custom_capacity_map_in_upstreams_shape_and_logger(caplog):
    import logging

    conf = {"tiny": {"linearnet": [4], "cnn": {"conv_layers": [(4, 3)], "fc_layers": [8]}}}
    with caplog.at_level(logging.INFO, logger="amulet.utils._models"):
        model = initialize_model("linearnet", "tiny", 6, 2, model_conf=conf)
    assert model.hidden_layer_sizes == [4]
    assert "Model initialized" in caplog.text
    cnn = initialize_model("cnn", "tiny", 784, 3, model_conf=conf)
    assert cnn.conv_channels_kernel == [(4, 3)] and cnn.fc_layers == [8]


def test_channel_mismatch_says_how_to_build_for_the_data():
    """fmnist into upstream's 3-channel VGG fails as upstream does, but the error names the fix."""
    model = initialize_model("vgg", "m1", 28 * 28, 10).eval()
    with pytest.raises(RuntimeError, match=r"built for 3-channel images .* input_shape=\(1, 28, 28\)"):
        model(torch.zeros(2, 1, 28, 28))
    fixed = initialize_model("vgg", "m1", 28 * 28, 10, input_shape=(1, 28, 28)).eval()
    assert fixed(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
