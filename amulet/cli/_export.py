"""``amulet export-model``: turn a model into a file Amulet loads without pickle.

* ``OUTPUT`` ending in ``.pt2`` (or ``.onnx``): any PyTorch architecture, as a torch.export archive (and
  ONNX with ``--onnx``), from ``--entry`` and the input shape (``--dataset`` or ``--input-shape``);
* otherwise a directory: a registered architecture as model.json + model.safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from amulet.cli._app import app
from amulet.exceptions import AmuletError


def _parse_shape(text: str) -> list[int]:
    try:
        shape = [int(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated positive ints such as 1,28,28; got {text!r}") from exc
    if not shape or any(v < 1 for v in shape):
        raise typer.BadParameter(f"expected comma-separated positive ints such as 1,28,28; got {text!r}")
    return shape


def _parse_config(text: str) -> dict:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("the config must be a JSON object such as '{\"hidden_layer_sizes\": [64, 32]}'")
    return value


@app.command("export-model")
def export_model_command(
    output: Annotated[
        Path,
        typer.Argument(
            help="model.pt2 (any architecture, torch.export; model.onnx for ONNX only), or a directory for "
            "model.json + model.safetensors (registered architectures)."
        ),
    ],
    entry: Annotated[
        str | None,
        typer.Option(
            "--entry",
            help="Your trusted code: 'package.module:function' or 'path/to/file.py:function'. It is called "
            "without arguments and returns the nn.Module (of a registered architecture), or a (module, spec dict) "
            "pair.",
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(
            "--architecture",
            "-a",
            help="Registered architecture: linearnet, simplecnn, vgg, resnet or an installed entry point.",
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Architecture config as a JSON object, or @file.json.")
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option("--input-shape", help="Input shape without the batch axis: 108 (tabular) or 1,28,28 (images)."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Built-in dataset whose input shape and classes to export for (.pt2/.onnx)."),
    ] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write an ONNX file next to the .pt2.")] = False,
    num_classes: Annotated[int | None, typer.Option("--num-classes", min=1, help="Number of classes.")] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Weights-only checkpoint: a torch state_dict saved with torch.save (read with weights_only=True) "
            "or safetensors. Pickled whole models are refused.",
        ),
    ] = None,
) -> None:
    """Write your model as a file Amulet (and its service) load without pickle.

    Any architecture: `amulet export-model model.pt2 --entry my_model.py:build --dataset census [--onnx]`
    runs your trusted function, exports the model it returns with torch.export (dynamic batch axis) and checks
    the file as an upload is checked. Registered architectures: an OUTPUT directory gets model.json +
    model.safetensors, from --entry or from --architecture, --config, --input-shape, --num-classes, --weights.
    """
    # lazy: amulet.io imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.io import export_graph_model, export_model, inspect_model_file, sha256_file

    if output.suffix.lower() in (".pt2", ".onnx"):
        if architecture is not None or config is not None:
            typer.echo("error: --architecture/--config are for the safetensors format; a .pt2 takes --entry.", err=True)
            raise typer.Exit(2)
        try:
            written = export_graph_model(
                output,
                entry=entry,
                input_shape=_parse_shape(input_shape) if input_shape is not None else None,
                dataset=dataset,
                num_classes=num_classes,
                weights=weights,
                onnx=onnx,
            )
        except AmuletError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        for path in written:
            info = inspect_model_file(path)
            typer.echo(
                f"{info.format}: {path} (input shape {list(info.input_shape)}, {info.num_classes} classes, "
                f"{info.num_parameters} parameters, sha256 {info.sha256})"
            )
        return
    if dataset is not None or onnx:
        typer.echo("error: --dataset/--onnx export a graph: give an OUTPUT ending in .pt2 (e.g. model.pt2).", err=True)
        raise typer.Exit(2)
    try:
        spec_path, weights_path = export_model(
            output,
            entry=entry,
            architecture=architecture,
            config=_parse_config(config) if config is not None else None,
            input_shape=_parse_shape(input_shape) if input_shape is not None else None,
            num_classes=num_classes,
            weights=weights,
        )
    except AmuletError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"spec:    {spec_path}")
    typer.echo(f"weights: {weights_path} (sha256 {sha256_file(weights_path)})")
