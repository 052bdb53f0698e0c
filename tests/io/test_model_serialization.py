"""Spec + safetensors round trips (bit for bit) and every way weights or specs are rejected."""

from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from amulet.exceptions import ModelSpecError
from amulet.io import (
    SPEC_FILENAME,
    WEIGHTS_FILENAME,
    ArchitectureSpec,
    load_model,
    read_spec,
    read_weights,
    save_model,
    sha256_file,
)
from amulet.models import register_architecture
from amulet.models._registry import _REGISTRY
from amulet.utils import initialize_model, seeded_init

SHAPE = (1, 28, 28)


def _trained(arch: str, capacity: str = "m1") -> nn.Module:
    """A model after one SGD step, so parameters and BatchNorm statistics differ from their initial values."""
    model = seeded_init(lambda: initialize_model(arch, capacity, 784 if arch == "linearnet" else SHAPE, 10), 0)
    gen = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(1):
        x, y = torch.rand(4, *SHAPE, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _spec(model: nn.Module) -> dict:
    return {
        "architecture": model.architecture,
        "config": model.architecture_config(),
        "input_shape": list(SHAPE) if model.architecture != "linearnet" else [784],
        "num_classes": 10,
    }


@pytest.fixture(scope="module")
def linearnet() -> nn.Module:
    return _trained("linearnet")


@pytest.fixture(scope="module")
def saved_linearnet(linearnet, tmp_path_factory):
    return save_model(linearnet, tmp_path_factory.mktemp("linearnet"), _spec(linearnet))


@pytest.mark.parametrize("arch", ["linearnet", "cnn", "vgg"])
def test_round_trip_reproduces_logits_bit_for_bit(arch, tmp_path):
    model = _trained(arch)
    spec_path, weights_path = save_model(model, tmp_path / "out", _spec(model))
    assert (spec_path.name, weights_path.name) == (SPEC_FILENAME, WEIGHTS_FILENAME)
    loaded = load_model(spec_path, weights_path)
    assert not loaded.training
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.get_hidden(x), model.get_hidden(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    written = json.loads(spec_path.read_text())
    assert written["weights_sha256"] == sha256_file(weights_path)
    assert written["format_version"] == 1


def test_spec_is_inferred_for_zoo_models_and_paths_may_be_given(linearnet, tmp_path):
    spec_path, weights_path = save_model(linearnet, (tmp_path / "a.json", tmp_path / "w" / "b.safetensors"))
    spec = read_spec(spec_path)
    assert spec.architecture == "linearnet" and spec.input_shape == (784,) and spec.num_classes == 10
    x = torch.rand(3, 784)
    assert torch.equal(load_model(spec, weights_path)(x), linearnet(x))


def test_vgg_spec_needs_an_input_shape(tmp_path):
    with pytest.raises(ModelSpecError, match="input shape"):
        save_model(initialize_model("vgg", "m1", 1, 10), tmp_path)


def test_weights_from_bytes_stream_and_torch_zip_state_dict(linearnet, saved_linearnet, tmp_path):
    spec_path, weights_path = saved_linearnet
    data = weights_path.read_bytes()
    x = torch.rand(3, 784)
    expected = linearnet(x)
    assert torch.equal(load_model(spec_path, data)(x), expected)
    assert torch.equal(load_model(spec_path, io.BytesIO(data))(x), expected)
    checkpoint = tmp_path / "weights.pt"  # a weights-only torch checkpoint (zip), no checksum in this spec
    torch.save(linearnet.state_dict(), checkpoint)
    spec = read_spec(spec_path).model_copy(update={"weights_sha256": None})
    assert torch.equal(load_model(spec, checkpoint)(x), expected)
    assert set(read_weights(checkpoint.read_bytes())) == set(linearnet.state_dict())


def test_half_precision_weights_are_cast(linearnet, saved_linearnet, tmp_path):
    spec = read_spec(saved_linearnet[0]).model_copy(update={"weights_sha256": None})
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in linearnet.state_dict().items()}
    save_file(half, tmp_path / "half.safetensors")
    loaded = load_model(spec, tmp_path / "half.safetensors")
    assert loaded.classifier.weight.dtype == torch.float32
    assert torch.allclose(loaded.classifier.weight, linearnet.classifier.weight, atol=1e-3)


def _tampered(saved, tmp_path, edit) -> tuple[ArchitectureSpec, str]:
    spec_path, weights_path = saved
    state = load_file(weights_path)
    edit(state)
    path = tmp_path / "tampered.safetensors"
    save_file(state, path)
    return read_spec(spec_path).model_copy(update={"weights_sha256": None}), str(path)


def _set_nan(state):
    state["features.1.weight"][0, 0] = float("nan")
    state["classifier.bias"][1] = float("inf")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda s: s.update({"classifier.weight": torch.zeros(10, 64)}),
            r"wrong shapes for classifier\.weight \(file \[10, 64\], architecture \[10, 128\]\)",
        ),
        (lambda s: s.pop("classifier.bias"), r"missing keys classifier\.bias"),
        (lambda s: s.update({"extra.weight": torch.zeros(2)}), r"unexpected keys extra\.weight"),
        (_set_nan, r"non-finite values in classifier\.bias \(0 NaN, 1 Inf\), features\.1\.weight \(1 NaN, 0 Inf\)"),
        (
            lambda s: s.update({"classifier.bias": torch.zeros(10, dtype=torch.int32)}),
            r"wrong dtypes for classifier\.bias \(file torch\.int32",
        ),
        (
            lambda s: s.update({"features.2.num_batches_tracked": torch.tensor(2.0)}),
            r"wrong dtypes for features\.2\.num_batches_tracked",
        ),
    ],
    ids=["shape", "missing", "unexpected", "nan-inf", "dtype", "int-buffer"],
)
def test_bad_weights_are_rejected_naming_the_key(saved_linearnet, tmp_path, edit, pattern):
    spec, path = _tampered(saved_linearnet, tmp_path, edit)
    with pytest.raises(ModelSpecError, match=r"The weights do not match architecture 'linearnet': .*" + pattern):
        load_model(spec, path)


def test_wrapped_model_keys_get_a_hint(linearnet, saved_linearnet, tmp_path):
    spec = read_spec(saved_linearnet[0]).model_copy(update={"weights_sha256": None})
    save_file({f"_module.{k}": v for k, v in linearnet.state_dict().items()}, tmp_path / "w.safetensors")
    with pytest.raises(ModelSpecError, match="GradSampleModule"):
        load_model(spec, tmp_path / "w.safetensors")


def test_save_refuses_nan_weights(tmp_path):
    model = initialize_model("linearnet", "m1", 10, 2)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ModelSpecError, match=r"classifier\.weight \(1 NaN"):
        save_model(model, tmp_path)
    assert not (tmp_path / WEIGHTS_FILENAME).exists()


def test_save_refuses_a_spec_that_does_not_fit_the_model(linearnet, tmp_path):
    spec = {**_spec(linearnet), "config": {"hidden_layer_sizes": [128, 256], "batch_norm": True}}
    with pytest.raises(ModelSpecError, match="unexpected keys"):
        save_model(linearnet, tmp_path, spec)


def test_checksum_mismatch(saved_linearnet, linearnet, tmp_path):
    other = tmp_path / "other.safetensors"
    state = {k: v.clone() for k, v in linearnet.state_dict().items()}
    state["classifier.bias"] += 1
    save_file(state, other)
    with pytest.raises(ModelSpecError, match="SHA-256"):
        load_model(saved_linearnet[0], other)


def test_damaged_safetensors(saved_linearnet, tmp_path):
    data = saved_linearnet[1].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    spec = read_spec(saved_linearnet[0]).model_copy(update={"weights_sha256": None})
    with pytest.raises(ModelSpecError, match="damaged"):
        load_model(spec, tmp_path / "cut.safetensors")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            {"architecture": "mystery"},
            r"Unknown architecture 'mystery'\. Known architectures: linearnet, .*simplecnn, vgg",
        ),
        ({"config": {"hidden_layer_sizes": [0]}}, r"'hidden_layer_sizes' parameter of LinearNet"),
        ({"config": {"dropout": 0.5}}, r"'dropout' config field is not accepted by architecture 'linearnet'"),
        ({"config": {"num_classes": 3}}, r"field 'config'.*'num_classes' is a top-level field"),
        ({"format_version": 2}, r"field 'format_version'"),
        ({"weights_url": "http://x"}, r"field 'weights_url'"),
        ({"input_shape": [0]}, r"field 'input_shape'"),
        ({"num_classes": 0}, r"field 'num_classes'"),
        ({"input_shape": [785]}, r"wrong shapes for features\.1\.weight"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field(saved_linearnet, change, pattern):
    spec = {**json.loads(saved_linearnet[0].read_text()), **change}
    with pytest.raises(ModelSpecError, match=pattern):
        load_model(spec, saved_linearnet[1])


def test_spec_file_errors(tmp_path, saved_linearnet):
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(tmp_path / "nope.json", saved_linearnet[1])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        load_model(tmp_path / "bad.json", saved_linearnet[1])
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(saved_linearnet[0], tmp_path / "missing.safetensors")


def test_forward_check_catches_an_input_shape_the_model_cannot_take(tmp_path):
    def fixed(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return nn.Linear(4, num_classes)  # ignores input_shape: a broken plugin

    register_architecture("fixed-four-test", fixed)
    try:
        spec = {"architecture": "fixed-four-test", "input_shape": [5], "num_classes": 2}
        spec_path, weights_path = save_model(nn.Linear(4, 2), tmp_path, spec)
        with pytest.raises(ModelSpecError, match=r"fails on an input of shape \[5\]"):
            load_model(spec_path, weights_path)
        assert isinstance(load_model(spec_path, weights_path, check_forward=False), nn.Linear)
    finally:
        _REGISTRY.pop("fixed-four-test", None)


def test_loading_leaves_the_global_rng_alone(saved_linearnet):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model(*saved_linearnet)
    assert torch.equal(torch.rand(3), expected)


def test_spec_asking_for_missing_pretrained_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = {"architecture": "resnet", "config": {"pretrained": True}, "input_shape": [3, 8, 8], "num_classes": 2}
    with pytest.raises(ModelSpecError, match="not in the local torch hub cache"):
        load_model(spec, tmp_path / "any.safetensors")
