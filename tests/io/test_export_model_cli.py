"""``amulet export-model``: from trusted code or a weights-only checkpoint to model.json + model.safetensors."""

from __future__ import annotations

import json
import pickle
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from amulet.cli import app
from amulet.exceptions import ModelSpecError
from amulet.io import export_graph_model, inspect_model_file, load_model, read_spec, sha256_file
from amulet.models import LinearNet, SimpleCNN
from amulet.utils import seeded_init

ENTRY_CODE = textwrap.dedent(
    """
    from amulet.models import LinearNet, SimpleCNN, VGG
    from amulet.utils import seeded_init

    def build_linear():
        return seeded_init(lambda: LinearNet(12, 3, hidden_layer_sizes=[8, 4]), 5).eval()

    def build_cnn():
        return seeded_init(lambda: SimpleCNN([(4, 3)], [8], num_classes=5), 6).eval()

    def build_vgg():
        return VGG(10, [8, "M", 16, "M"], input_channels=1)

    def not_a_model():
        return {"weights": 1}
    """
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def user_code(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(ENTRY_CODE)
    return path


def _invoke(runner, *args: str):
    return runner.invoke(app, ["export-model", *map(str, args)])


def test_entry_file_function_round_trip(runner, user_code, tmp_path):
    out = tmp_path / "export"
    result = _invoke(runner, out, "--entry", f"{user_code}:build_linear")
    assert result.exit_code == 0, result.output
    spec = read_spec(out / "model.json")
    assert (spec.architecture, spec.input_shape, spec.num_classes) == ("linearnet", (12,), 3)
    assert sha256_file(out / "model.safetensors") in result.output
    expected = seeded_init(lambda: LinearNet(12, 3, hidden_layer_sizes=[8, 4]), 5).eval()
    x = torch.rand(4, 12)
    assert torch.equal(load_model(out / "model.json", out / "model.safetensors")(x), expected(x))


def test_entry_module_function(runner, user_code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = _invoke(runner, "cnn-out", "--entry", "user_models:build_cnn")
    assert result.exit_code == 0, result.output
    expected = seeded_init(lambda: SimpleCNN([(4, 3)], [8], num_classes=5), 6).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(load_model("cnn-out/model.json", "cnn-out/model.safetensors")(x), expected(x))


def test_vgg_needs_the_input_shape(runner, user_code, tmp_path):
    result = _invoke(runner, tmp_path / "v", "--entry", f"{user_code}:build_vgg")
    assert result.exit_code == 2
    assert "input shape" in result.output
    result = _invoke(runner, tmp_path / "v", "--entry", f"{user_code}:build_vgg", "--input-shape", "1,28,28")
    assert result.exit_code == 0, result.output
    assert read_spec(tmp_path / "v" / "model.json").input_shape == (1, 28, 28)


def test_architecture_config_and_weights_only_checkpoint(runner, tmp_path):
    model = seeded_init(lambda: LinearNet(7, 2, hidden_layer_sizes=[5], batch_norm=False), 1).eval()
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    config = json.dumps({"hidden_layer_sizes": [5], "batch_norm": False})
    result = _invoke(
        runner, tmp_path / "o", "-a", "linearnet", "--config", config, "--input-shape", "7", "--num-classes", "2",
        "--weights", tmp_path / "ckpt.pt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    x = torch.rand(3, 7)
    assert torch.equal(load_model(tmp_path / "o" / "model.json", tmp_path / "o" / "model.safetensors")(x), model(x))


def test_wrong_config_for_the_checkpoint_is_reported(runner, tmp_path):
    torch.save(LinearNet(7, 2, hidden_layer_sizes=[5]).state_dict(), tmp_path / "ckpt.pt")
    result = _invoke(
        runner, tmp_path / "o", "-a", "linearnet", "--input-shape", "7", "--num-classes", "2",
        "--weights", tmp_path / "ckpt.pt",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "do not match architecture 'linearnet'" in result.output
    assert not (tmp_path / "o").exists()


def test_pickled_checkpoint_is_refused(runner, tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w')",))

    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"w": Payload()}))
    result = _invoke(
        runner, tmp_path / "o", "-a", "linearnet", "--input-shape", "7", "--num-classes", "2",
        "--weights", tmp_path / "model.pkl",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "pickle" in result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give either --entry"),
        (("-a", "linearnet", "--input-shape", "7", "--num-classes", "2"), "Give either --entry"),
        (("-a", "linearnet"), "input shape"),
        (("--config", "{}"), "needs an architecture"),
        (("--entry", "nocolon"), "must look like"),
        (("--entry", "no_such_module_xyz:f"), "Cannot import"),
    ],
)
def test_usage_errors(runner, tmp_path, args, message):
    result = _invoke(runner, tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_entry_must_return_a_module(runner, user_code, tmp_path):
    result = _invoke(runner, tmp_path / "o", "--entry", f"{user_code}:not_a_model")
    assert result.exit_code == 2
    assert "not a torch.nn.Module" in result.output
    result = _invoke(runner, tmp_path / "o", "--entry", f"{user_code}:missing")
    assert result.exit_code == 2
    assert "has no attribute 'missing'" in result.output


def test_bad_option_values(runner, tmp_path):
    result = _invoke(runner, tmp_path / "o", "-a", "vgg", "--input-shape", "1,x", "--num-classes", "2")
    assert result.exit_code == 2
    result = _invoke(runner, tmp_path / "o", "-a", "vgg", "--config", "[1]", "--input-shape", "1,28,28")
    assert result.exit_code == 2


def test_graph_export_takes_shape_and_classes_from_a_builtin_dataset(tmp_path):
    """``dataset="census"`` gives the input shape (93 encoded columns) and the 2 classes, checked on export."""
    model = seeded_init(lambda: LinearNet(93, 2, hidden_layer_sizes=[8]), 0).eval()
    (path,) = export_graph_model(tmp_path / "census.pt2", model=model, dataset="census")
    info = inspect_model_file(path)
    assert (info.input_shape, info.num_classes) == ((93,), 2)
    with pytest.raises(ModelSpecError, match=r"contradicts the dataset 'census'.s \[93\]"):
        export_graph_model(tmp_path / "x.pt2", model=model, dataset="census", input_shape=(12,))
    wrong = seeded_init(lambda: LinearNet(93, 3, hidden_layer_sizes=[8]), 0).eval()
    with pytest.raises(ModelSpecError, match="outputs 3 logits but 2 classes are expected"):
        export_graph_model(tmp_path / "y.pt2", model=wrong, dataset="census")
    with pytest.raises(ModelSpecError, match="Unknown dataset 'no_such_data'"):
        export_graph_model(tmp_path / "z.pt2", model=model, dataset="no_such_data")
