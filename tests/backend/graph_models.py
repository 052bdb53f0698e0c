"""Exported models of architectures that are not in the registry, and hostile ones, for the service tests.

Every file is exported in the test from a small torch module (torch.export for ``.pt2``, torch.onnx for
``.onnx``). The hostile files each carry a canary: a marker file that appears only if the payload runs.

* :func:`pickled_member_pt2`: a valid archive whose pickled member (the sample inputs) is replaced by a
  pickle whose ``__reduce__`` opens the marker for writing (``torch.export.load`` retries such a member with
  ``weights_only=False``, which would create it).
* :func:`custom_op_pt2`: a graph calling a custom operator whose Python body writes the marker when it runs.
* :func:`external_data_onnx`: an ONNX model whose initializer's external data points outside the upload.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch

N_FEATURES = 6


def _torch() -> Any:
    import torch

    torch.set_num_threads(1)
    return torch


class ResidualMLP(torch.nn.Module):
    """A residual MLP with LayerNorm and GELU (no such architecture in the registry)."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(n_features, hidden)
        self.norm = torch.nn.LayerNorm(hidden)
        self.block = torch.nn.Linear(hidden, hidden)
        self.out = torch.nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + torch.nn.functional.gelu(self.block(self.norm(h)))
        return self.out(h)


def residual_mlp(n_features: int = N_FEATURES, n_classes: int = 2, *, hidden: int = 16, seed: int = 0) -> ResidualMLP:
    """A seeded :class:`ResidualMLP` in eval mode."""
    torch.manual_seed(seed)
    return ResidualMLP(n_features, n_classes, hidden).eval()


def n_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def export_pt2(model: Any, path: Path, input_shape: tuple[int, ...]) -> Path:
    """``torch.export`` ``model`` with a dynamic batch dimension and save it to ``path`` (``.pt2``)."""
    torch = _torch()
    example = torch.zeros(4, *input_shape)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def export_onnx(model: Any, path: Path, input_shape: tuple[int, ...]) -> Path:
    """``torch.onnx.export`` ``model`` with a dynamic batch dimension to ``path`` (``.onnx``)."""
    torch = _torch()
    example = torch.zeros(4, *input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,  # the opsets the ONNX converter supports (GELU is decomposed, LayerNorm is one op)
        dynamo=False,
    )
    return path


def pt2_file(tmp_path: Path, *, n_features: int = N_FEATURES, n_classes: int = 2, seed: int = 0) -> Path:
    """A residual MLP for ``n_features`` inputs and ``n_classes`` classes, exported to a ``.pt2``."""
    model = residual_mlp(n_features, n_classes, seed=seed)
    return export_pt2(model, tmp_path / f"resmlp-{n_features}x{n_classes}-{seed}.pt2", (n_features,))


def onnx_file(tmp_path: Path, *, n_features: int = N_FEATURES, n_classes: int = 2, seed: int = 0) -> Path:
    """A residual MLP for ``n_features`` inputs and ``n_classes`` classes, exported to ONNX."""
    model = residual_mlp(n_features, n_classes, seed=seed)
    return export_onnx(model, tmp_path / f"resmlp-{n_features}x{n_classes}-{seed}.onnx", (n_features,))


def upload_graph(client: Any, headers: dict[str, str], path: Path, name: str = "") -> Any:
    """``POST /models`` with the file as field ``model``."""
    files = {"model": (path.name, path.read_bytes(), "application/octet-stream")}
    return client.post("/models", files=files, data={"name": name or path.name}, headers=headers)


# ------------------------------------------------------------------------------------------------ hostile files
class CreatesFile:
    """Unpickling this opens ``marker`` for writing (creating it): proof that a pickle payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def pickled_member_pt2(tmp_path: Path, marker: Path) -> Path:
    """A valid ``.pt2`` whose pickled member (the sample inputs) would create ``marker`` when unpickled."""
    torch = _torch()
    base = pt2_file(tmp_path / "base")
    payload = io.BytesIO()
    torch.save(((CreatesFile(marker),), {}), payload)
    out = tmp_path / "pickled-member.pt2"
    replaced = False
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data/sample_inputs/model.pt"):
                data, replaced = payload.getvalue(), True
            target.writestr(info, data)
    assert replaced, "torch.export.save no longer writes data/sample_inputs/model.pt: update the hostile archive"
    return out


#: Where the custom operator's body writes when it runs (set by :func:`custom_op_pt2`).
_CANARY: dict[str, Path] = {}
_OPS: dict[str, Any] = {}


def _canary_op() -> Any:
    """The custom operator ``amulet_canary::touch`` (registered once per process)."""
    if "touch" in _OPS:
        return _OPS["touch"]
    torch = _torch()

    # An explicit schema: annotations are strings here (``from __future__ import annotations``).
    @torch.library.custom_op("amulet_canary::touch", mutates_args=(), schema="(Tensor x) -> Tensor")
    def touch(x: Any) -> Any:
        marker = _CANARY.get("marker")
        if marker is not None:
            marker.write_text("the custom operator ran")
        return x.clone()

    @touch.register_fake
    def _(x: Any) -> Any:
        return torch.empty_like(x)

    _OPS["touch"] = touch
    return touch


def custom_op_pt2(tmp_path: Path, marker: Path, *, n_features: int = N_FEATURES) -> Path:
    """A ``.pt2`` whose graph calls the custom operator ``amulet_canary::touch`` (it writes ``marker``)."""
    torch = _torch()
    touch = _canary_op()
    _CANARY["marker"] = marker
    inner = residual_mlp(n_features, 2)

    class WithCustomOp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(touch(x))

    return export_pt2(WithCustomOp().eval(), tmp_path / "custom-op.pt2", (n_features,))


def external_data_onnx(tmp_path: Path, target: Path) -> Path:
    """An ONNX model (one Gemm) whose weight initializer's external data is ``target``, outside the upload.

    The location is written relative to the model's folder (``../..``), the way a crafted file escapes it.
    """
    import numpy as np
    from onnx import TensorProto, helper

    weight = np.ones((2, N_FEATURES), dtype=np.float32)
    target.write_bytes(weight.tobytes())
    folder = tmp_path / "onnx-external" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    relative = Path("..") / ".." / target.relative_to(tmp_path)
    initializer = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, N_FEATURES])
    initializer.data_location = TensorProto.EXTERNAL
    for key, value in (("location", str(relative)), ("offset", "0"), ("length", str(weight.nbytes))):
        entry = initializer.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["logits"], transB=1)],
        "escape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[initializer],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "escape.onnx"
    path.write_bytes(model.SerializeToString())
    return path
