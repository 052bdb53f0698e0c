"""The model zoo: shapes on real input sizes, get_hidden, BatchNorm options, clear errors for bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.models import BATCH_OF_ONE_MESSAGE, VGG, VGG_CONFIGS, AmuletModel, LinearNet, ResNet, SimpleCNN


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("shape", "name"), [((1, 28, 28), "VGG11"), ((3, 32, 32), "VGG11"), ((1, 28, 28), "VGG19")])
def test_vgg_forward_and_hidden_on_fmnist_and_cifar_shapes(shape, name):
    model = VGG(10, name, input_channels=shape[0]).eval()
    x = _x(2, *shape)
    assert model(x).shape == (2, 10)
    assert model.get_hidden(x).shape == (2, 512)
    assert torch.equal(model.classifier(model.get_hidden(x)), model(x))


def test_vgg_is_the_classic_cifar_network_on_32x32():
    model = VGG(10, "VGG16").eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and convs[0].in_channels == 3
    # Before the adaptive pool the 32x32 map is already 1x1 (five halvings), so that pool is the identity.
    assert model.features[:-2](_x(2, 3, 32, 32)).shape == (2, 512, 1, 1)
    # On 28x28 the ceil-mode pools keep one pixel instead of collapsing.
    assert VGG(10, "VGG16", input_channels=1).eval().features[:-2](_x(2, 1, 28, 28)).shape == (2, 512, 1, 1)


def test_vgg_trains_on_fmnist_shape():
    model = VGG(10, "VGG11", input_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _x(4, 1, 28, 28), torch.arange(4)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()


@pytest.mark.parametrize(
    ("shape", "input_size"), [((1, 28, 28), 28), ((3, 32, 32), (32, 32)), ((3, 64, 48), (64, 48)), ((1, 8, 8), 8)]
)
def test_simplecnn_any_channels_and_size(shape, input_size):
    model = SimpleCNN([(12, 5), (24, 5)], [256], num_classes=7, input_channels=shape[0], input_size=input_size).eval()
    x = _x(3, *shape)
    assert model(x).shape == (3, 7)
    assert model.get_hidden(x).shape == (3, 256)
    # A model sized for 28x28 still runs on other sizes (adaptive pooling).
    assert SimpleCNN(input_channels=shape[0]).eval()(x).shape == (3, 10)


def test_simplecnn_default_is_upstream_badnets_cnn():
    model = SimpleCNN()
    assert model.conv_channels_kernel == [(20, 5), (50, 5)] and model.fc_layers == [500]
    assert model.hidden[1].in_features == 50 * 7 * 7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in SimpleCNN(batch_norm=True).modules())


def test_simplecnn_without_fc_layers_hidden_is_flat_conv_features():
    model = SimpleCNN([(4, 3)], [], num_classes=3).eval()
    assert model.get_hidden(_x(2, 1, 28, 28)).shape == (2, 4 * 14 * 14)


def test_linearnet_defaults_and_hidden():
    model = LinearNet(108, 2).eval()
    assert model.hidden_layer_sizes == [128, 256, 128]
    x = _x(5, 108)
    assert model(x).shape == (5, 2)
    assert model.get_hidden(x).shape == (5, 128)
    assert LinearNet(784, 10).eval()(_x(2, 1, 28, 28)).shape == (2, 10)  # images are flattened
    assert not any(isinstance(m, nn.BatchNorm1d) for m in LinearNet(5, 2, batch_norm=False).modules())


def test_resnet18_small_images_and_one_channel():
    model = ResNet("resnet18", num_classes=10, input_channels=1).eval()
    x = _x(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    assert model.get_hidden(x).shape == (2, 512)
    assert model.features.conv1.kernel_size == (3, 3) and isinstance(model.features.maxpool, nn.Identity)


def test_resnet_without_batchnorm_uses_groupnorm():
    model = ResNet("resnet18", num_classes=2, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    model.train()(_x(1, 3, 8, 8)).sum().backward()  # GroupNorm trains on a batch of one


def test_resnet_pretrained_missing_weights_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*never downloads"):
        ResNet("resnet18", pretrained=True)


def test_resnet_pretrained_reads_the_local_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = torchvision.models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = ResNet("resnet18", pretrained=True, num_classes=3, replace_first=False)
    assert torch.equal(model.features.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.features.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: LinearNet(5, 2).train(),
        lambda: VGG(2, [8, "M", 8, "M", 8, "M"], input_channels=1).train(),
        lambda: ResNet("resnet18", num_classes=2).train(),
    ],
    ids=["linearnet", "vgg", "resnet"],
)
def test_batch_of_one_in_training_mode_is_explained(factory):
    model = factory()
    shape = (1, 5) if isinstance(model, LinearNet) else (1, 3 if isinstance(model, ResNet) else 1, 4, 4)
    with pytest.raises(ValueError, match="cannot normalise a batch of one sample") as info:
        model(_x(*shape))
    assert str(info.value).startswith(BATCH_OF_ONE_MESSAGE.split("{")[0])
    assert model.eval()(_x(*shape)).shape == (1, 2)  # eval mode uses running statistics


def test_batch_of_one_trains_without_batchnorm():
    model = LinearNet(5, 2, batch_norm=False).train()
    assert model(_x(1, 5)).shape == (1, 2)


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: LinearNet(0, 2), "num_features"),
        (lambda: LinearNet(5, 1.5), "num_classes"),
        (lambda: LinearNet(5, 2, hidden_layer_sizes=[64, 0]), "hidden_layer_sizes"),
        (lambda: LinearNet(5, 2, hidden_layer_sizes=[]), "hidden_layer_sizes"),
        (lambda: LinearNet(5, 2, batch_norm="yes"), "batch_norm"),
        (lambda: VGG(0), "num_classes"),
        (lambda: VGG(10, "VGG12"), "layer_config"),
        (lambda: VGG(10, ["M"]), "layer_config"),
        (lambda: VGG(10, input_channels=0), "input_channels"),
        (lambda: SimpleCNN([(12, 5, 1)]), "conv_channels_kernel"),
        (lambda: SimpleCNN([]), "conv_channels_kernel"),
        (lambda: SimpleCNN(fc_layers=[-1]), "fc_layers"),
        (lambda: SimpleCNN(input_size=(28, 0)), "input_size"),
        (lambda: SimpleCNN(input_channels=True), "input_channels"),
        (lambda: ResNet("resnet19"), "size"),
        (lambda: ResNet(num_classes=-3), "num_classes"),
        (lambda: ResNet(pretrained=True, batch_norm=False), "batch_norm"),
    ],
)
def test_bad_constructor_parameters_name_the_parameter(build, parameter):
    with pytest.raises(InvalidParameterError, match=f"The '{parameter}' parameter of") as info:
        build()
    assert isinstance(info.value, ValueError)


def test_every_zoo_model_is_an_amulet_model_that_describes_itself():
    for model in (LinearNet(4, 2), VGG(2, "VGG11"), SimpleCNN(), ResNet()):
        assert isinstance(model, AmuletModel)
        assert model.architecture and isinstance(model.architecture_config(), dict)
    assert VGG(2, "VGG13").architecture_config()["layer_config"] == VGG_CONFIGS["VGG13"]
    with pytest.raises(NotImplementedError):
        AmuletModel().get_hidden(torch.zeros(1))
