"""Uploaded graphs (.pt2 torch.export archives, .onnx): refused when unsafe (the payload never runs, checked
with a canary file), loaded faithfully when safe, re-initialised by the documented rule, pre-flighted."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from amulet.cli import app
from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io import (
    GraphModel,
    dp_sgd_refusal,
    export_graph_model,
    inspect_model_file,
    load_graph_model,
    per_sample_gradients,
    preflight_graph_model,
)


class SmallNet(nn.Module):
    def __init__(self, d_in: int = 6, k: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, 16)
        self.norm = nn.LayerNorm(16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, k)
        self.scale = nn.Parameter(torch.full((16,), 2.0))  # a parameter no torch layer owns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.norm(self.fc(x))) * self.scale
        return self.out(self.drop(self.bn(h)))


def _export(tmp_path: Path, name: str = "model.pt2", model: nn.Module | None = None) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = (model or SmallNet()).eval()
    written = export_graph_model(tmp_path / name, model=model, input_shape=(6,), num_classes=3)
    return written[0], model


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy a zip archive, replacing members (matched by the path after the root folder)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            inner = info.filename.split("/", 1)[1]
            zout.writestr(info, replace.get(inner, zin.read(info)))


class Canary:
    """Unpickling this opens (creates) the canary file: the payload ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _payload(canary: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save((Canary(canary),), buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# refused, and the payload never runs


def test_pickled_sample_inputs_with_code_are_refused_and_never_run(tmp_path: Path):
    path, _ = _export(tmp_path)
    bad = tmp_path / "evil.pt2"
    canary = tmp_path / "canary-inputs"
    _rewrite(path, bad, {"data/sample_inputs/model.pt": _payload(canary)})
    for call in (inspect_model_file, load_graph_model, lambda p: preflight_graph_model(p, (6,), 3)):
        with pytest.raises(UnsafeModelFileError, match="sample inputs"):
            call(bad)
    assert not canary.exists()
    # The payload is live: torch's own loader falls back to weights_only=False and runs it (what happens after
    # that does not matter here).
    with contextlib.suppress(Exception):
        torch.export.load(bad)
    assert canary.exists()


def test_pickled_weight_with_code_is_refused_and_never_runs(tmp_path: Path):
    path, _ = _export(tmp_path)
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/")[0]
        config = json.loads(z.read(f"{root}/data/weights/model_weights_config.json"))
    entry = config["config"]["fc.weight"]
    entry["use_pickle"] = True
    canary = tmp_path / "canary-weight"
    bad = tmp_path / "evil.pt2"
    _rewrite(
        path,
        bad,
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{entry['path_name']}": _payload(canary),
        },
    )
    with pytest.raises(UnsafeModelFileError, match=r"fc\.weight"):
        load_graph_model(bad)
    assert not canary.exists()


def test_custom_operator_is_refused(tmp_path: Path):
    @torch.library.custom_op("amulet_test::shift", mutates_args=())
    def shift(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    @shift.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    class WithCustomOp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.ops.amulet_test.shift(x))

    program = torch.export.export(
        WithCustomOp(), (torch.rand(2, 6),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
    )
    path = tmp_path / "custom.pt2"
    torch.export.save(program, path)
    with pytest.raises(UnsafeModelFileError, match=r"amulet_test\.shift"):
        inspect_model_file(path)
    with pytest.raises(UnsafeModelFileError, match="custom operator"):
        load_graph_model(path)


def _edit_program(path: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/")[0]
        program = json.loads(z.read(f"{root}/models/model.json"))
    edit(program)
    _rewrite(path, dst, {"models/model.json": json.dumps(program).encode()})


def test_code_in_symbolic_shapes_is_refused_and_never_runs(tmp_path: Path):
    path, _ = _export(tmp_path)
    canary = tmp_path / "canary-sympy"
    bad = tmp_path / "evil.pt2"

    def edit(program: dict) -> None:
        sizes = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        sizes[0]["as_expr"]["expr_str"] = f"__import__('os').system('touch {canary}')"

    _edit_program(path, bad, edit)
    with pytest.raises(UnsafeModelFileError, match="symbolic-shape"):
        load_graph_model(bad)
    assert not canary.exists()


def test_guard_code_strings_are_dropped_never_compiled(tmp_path: Path):
    path, _original = _export(tmp_path)
    canary = tmp_path / "canary-guards"
    bad = tmp_path / "guards.pt2"
    _edit_program(path, bad, lambda p: p.__setitem__("guards_code", [f"open({str(canary)!r}, 'w')"]))
    model = load_graph_model(bad)
    model(torch.rand(3, 6))
    assert not canary.exists()


def test_unexpected_members_are_refused(tmp_path: Path):
    path, _ = _export(tmp_path)
    bad = tmp_path / "opaque.pt2"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(f"{root}/data/constants/opaque_obj_0", b"\x80\x04N.")
    with pytest.raises(UnsafeModelFileError, match="opaque"):
        inspect_model_file(bad)


def _onnx_with_external(tmp_path: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(torch.rand(6, 3).numpy(), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    upload = tmp_path / "upload"
    upload.mkdir(exist_ok=True)
    path = upload / "model.onnx"
    onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_onnx_external_data_outside_the_upload_is_refused(tmp_path: Path, location: str):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 72)
    path = _onnx_with_external(tmp_path, location)
    with pytest.raises(UnsafeModelFileError, match=r"outside|absolute"):
        inspect_model_file(path)
    with pytest.raises(UnsafeModelFileError):
        load_graph_model(path)


def test_onnx_external_data_inside_the_upload_loads(tmp_path: Path):
    path = _onnx_with_external(tmp_path, "weights.bin")
    values = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    (path.parent / "weights.bin").write_bytes(values.numpy().tobytes())
    model = load_graph_model(path)
    x = torch.rand(2, 6)
    assert torch.allclose(model(x), x @ values)


def test_pickle_named_onnx_is_refused(tmp_path: Path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x80\x04\x95" + b"\0" * 20)
    with pytest.raises(UnsafeModelFileError, match="pickle"):
        inspect_model_file(bad)


# ---------------------------------------------------------------------------------------------------------------
# safe files: faithful, trainable, re-initialised by the rule


def test_pt2_loads_faithfully_with_layers_and_info(tmp_path: Path):
    path, original = _export(tmp_path)
    info = inspect_model_file(path)
    assert (info.format, info.input_shape, info.num_classes) == ("pt2", (6,), 3)
    assert info.num_parameters == sum(p.numel() for p in original.parameters())
    assert "torch.ops.aten.linear.default" in info.operators
    model = load_graph_model(path)
    assert isinstance(model, GraphModel) and not model.training
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Linear", "LayerNorm", "BatchNorm1d"} <= kinds
    x = torch.rand(5, 6)
    assert torch.allclose(model(x), original(x), atol=1e-6)
    trained = copy.deepcopy(model).train()  # dropout on: two passes differ; BatchNorm updates its statistics
    assert not torch.allclose(trained(x), trained(x))
    assert not torch.equal(trained.graph.bn.running_mean, model.graph.bn.running_mean)
    trained.eval()
    trained.graph.bn.load_state_dict(model.graph.bn.state_dict())
    assert torch.allclose(trained(x), original(x), atol=1e-6)  # eval mode again: the original function


def test_reinitialisation_follows_the_rule_and_the_seed(tmp_path: Path):
    path, _original = _export(tmp_path)
    uploaded = load_graph_model(path)
    copies = []
    for seed in (1, 1, 2):
        model = load_graph_model(path)
        torch.manual_seed(seed)
        model.reset_parameters()
        copies.append(dict(model.state_dict()))
    a, b, c = copies
    for key in a:
        assert torch.equal(a[key], b[key]), key  # same seed, same initial weights
    assert not torch.equal(a["graph.fc.weight"], c["graph.fc.weight"])
    assert not torch.equal(a["graph.fc.weight"], uploaded.state_dict()["graph.fc.weight"])
    bound = 1 / 6**0.5  # nn.Linear's Kaiming-uniform(a=sqrt(5)) bound for fan_in 6
    assert a["graph.fc.weight"].abs().max() <= bound
    assert torch.equal(a["graph.norm.weight"], torch.ones(16)) and torch.equal(a["graph.bn.bias"], torch.zeros(16))
    assert torch.equal(a["graph.bn.running_var"], torch.ones(16))
    assert torch.equal(a["graph.scale"], torch.full((16,), 2.0))  # no rule: the uploaded value is kept


def test_onnx_export_loads_faithfully(tmp_path: Path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3)).eval()
    (path,) = export_graph_model(tmp_path / "model.onnx", model=model, input_shape=(6,), num_classes=3)
    loaded = load_graph_model(path)
    assert loaded.info.format == "onnx" and loaded.info.num_parameters == 6 * 8 + 8 + 16 + 8 * 3 + 3
    x = torch.rand(4, 6)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
    torch.manual_seed(3)
    loaded.reset_parameters()
    assert not torch.allclose(loaded(x), model(x), atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# pre-flight: each failure names what does not fit


def test_preflight_names_each_mismatch(tmp_path: Path):
    path, _ = _export(tmp_path)
    preflight_graph_model(path, (6,), 3)
    with pytest.raises(ModelSpecError, match=r"shape \[6\].*\[7\]"):
        preflight_graph_model(path, (7,), 3)
    with pytest.raises(ModelSpecError, match="outputs 3 logits but the dataset has 2 classes"):
        preflight_graph_model(path, (6,), 2)
    model = load_graph_model(path)
    with torch.no_grad():
        model.graph.out.bias.fill_(float("nan"))
    with pytest.raises(ModelSpecError, match="not finite"):
        preflight_graph_model(model, (6,), 3)


def test_preflight_refuses_a_model_without_input_gradients(tmp_path: Path):
    class Detached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.round())  # rounding: zero gradient everywhere

    program = torch.export.export(
        Detached(), (torch.rand(2, 6),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
    )
    path = tmp_path / "detached.pt2"
    torch.export.save(program, path)
    with pytest.raises(ModelSpecError, match="gradient"):
        preflight_graph_model(path, (6,), 3)


def test_fixed_batch_export_is_refused_with_the_fix(tmp_path: Path):
    program = torch.export.export(nn.Linear(6, 3), (torch.rand(2, 6),))
    path = tmp_path / "fixed.pt2"
    torch.export.save(program, path)
    with pytest.raises(ModelSpecError, match="dynamic batch"):
        load_graph_model(path)


def test_export_model_cli_writes_pt2_and_onnx(tmp_path: Path):
    from typer.testing import CliRunner

    code = tmp_path / "net.py"
    code.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, groups=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))\n"
    )
    result = CliRunner().invoke(
        app, ["export-model", str(tmp_path / "out" / "m.pt2"), "--entry", f"{code}:build", "--input-shape", "1,28,28",
              "--num-classes", "10", "--onnx"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pt2:" in result.output and "onnx:" in result.output and "[1, 28, 28]" in result.output
    assert inspect_model_file(tmp_path / "out" / "m.onnx").num_classes == 10
    shutil.rmtree(tmp_path / "out")
    result = CliRunner().invoke(
        app, ["export-model", str(tmp_path / "m.pt2"), "--entry", f"{code}:build", "--input-shape", "1,28,28",
              "--num-classes", "2"],
    )  # fmt: skip
    assert result.exit_code == 2 and "10 logits but 2 classes" in result.output


def test_per_sample_gradients_of_a_graph_match_autograd_and_batchnorm_is_refused(tmp_path: Path):
    class NoBatchNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 8)
            self.norm = nn.GroupNorm(1, 8)
            self.out = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.norm(self.fc(x))))

    (path,) = export_graph_model(tmp_path / "gn.pt2", model=NoBatchNorm(), input_shape=(6,), num_classes=3)
    model = load_graph_model(path).train()
    assert dp_sgd_refusal(model) == ""
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    grads = per_sample_gradients(model, x, y)
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name][i], p.grad, atol=1e-6), name
    with_bn, _ = _export(tmp_path, name="bn.pt2")
    bn_model = load_graph_model(with_bn)
    assert "BatchNorm" in dp_sgd_refusal(bn_model) and "GroupNorm" in dp_sgd_refusal(bn_model)
    with pytest.raises(ModelSpecError, match="BatchNorm"):
        per_sample_gradients(bn_model, x, y)
