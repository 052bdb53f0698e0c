"""The architecture registry: built-ins, runtime registration, entry-point plugins, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.models import (
    ENTRY_POINT_GROUP,
    VGG,
    LinearNet,
    SimpleCNN,
    architectures,
    create_model,
    get_architecture,
    register_architecture,
)
from amulet.models._registry import _REGISTRY

REPO = Path(__file__).resolve().parents[2]


def test_builtins_are_registered():
    assert {"linearnet", "resnet", "simplecnn", "vgg"} <= set(architectures())
    assert get_architecture("VGG").source == "builtin"
    assert get_architecture("cnn").name == "simplecnn"  # initialize_model's name for SimpleCNN


def test_create_model_builds_each_builtin_from_input_shape():
    assert isinstance(create_model("linearnet", num_classes=2, input_shape=(1, 4, 4)), LinearNet)
    cnn = create_model("simplecnn", num_classes=3, input_shape=[3, 32, 32], conv_channels_kernel=[[8, 3]], fc_layers=[])
    assert isinstance(cnn, SimpleCNN) and cnn.input_channels == 3 and cnn.input_size == (32, 32)
    vgg = create_model("vgg", num_classes=4, input_shape=[1, 28, 28], layer_config="VGG13", batch_norm=False)
    assert isinstance(vgg, VGG) and vgg.input_channels == 1 and not vgg.batch_norm
    assert vgg.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(InvalidParameterError, match=r"Unknown architecture 'nope'\. Known architectures: .*linearnet"):
        create_model("nope")


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("vgg", {"layer_config": "VGG12"}, "layer_config"),
        ("vgg", {"colour": True}, "colour"),
        ("linearnet", {"input_shape": [10], "hidden_layer_sizes": [0]}, "hidden_layer_sizes"),
        ("linearnet", {"input_shape": [10], "num_features": 11}, "num_features"),
        ("simplecnn", {"input_shape": [28, 28]}, "input_shape"),
        ("resnet", {"size": "resnet7"}, "size"),
    ],
)
def test_bad_config_names_the_field(name, config, field):
    with pytest.raises(InvalidParameterError, match=f"'{field}'"):
        create_model(name, num_classes=2, **config)


def test_register_and_force():
    def tiny(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))

    try:
        register_architecture("Tiny-Test", tiny, description="a test net")
        assert "tiny-test" in architectures()
        assert create_model("tiny-test", num_classes=3, input_shape=(2, 2))(torch.zeros(1, 2, 2)).shape == (1, 3)
        with pytest.raises(InvalidParameterError, match="already registered"):
            register_architecture("tiny-test", tiny)
        register_architecture("tiny-test", lambda **kw: nn.Identity(), force=True)
        assert isinstance(create_model("tiny-test"), nn.Identity)
        register_architecture("tiny-test", lambda **kw: "not a module", force=True)
        with pytest.raises(InvalidParameterError, match=r"not a torch\.nn\.Module"):
            create_model("tiny-test")
    finally:
        _REGISTRY.pop("tiny-test", None)
    with pytest.raises(InvalidParameterError, match="'factory'"):
        register_architecture("broken", 42)  # type: ignore[arg-type]


def test_entry_point_plugins_load_lazily(tmp_path):
    """An installed package's ``amulet.architectures`` entry point shows up in the registry (own process)."""
    (tmp_path / "my_arch_plugin.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(*, num_classes, input_shape, width=4):
                '''A plugin network.'''
                return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.Linear(width, num_classes))

            def broken(**kwargs):
                raise RuntimeError("never called")
            """
        )
    )
    dist = tmp_path / "my_arch_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-arch-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nplugnet = my_arch_plugin:build\nghost = my_arch_plugin_missing:build\n"
    )
    code = textwrap.dedent(
        """
        import sys
        import amulet.models._registry as registry
        assert not registry._ENTRY_POINTS_LOADED
        from amulet.models import architectures, create_model, get_architecture
        names = architectures()
        assert "plugnet" in names and "linearnet" in names, names
        model = create_model("plugnet", num_classes=3, input_shape=(5,), width=6)
        assert model[2].out_features == 3 and model[1].out_features == 6
        assert get_architecture("plugnet").source.startswith("entry point")
        try:
            create_model("ghost")
        except ValueError as exc:
            assert "failed to load" in str(exc), exc
        else:
            raise AssertionError("ghost loaded")
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
