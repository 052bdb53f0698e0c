"""``amulet export-model``: turn a model into the safe format (model.json + model.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from amulet.cli._app import app


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
    output: Annotated[Path, typer.Argument(help="Directory to write model.json and model.safetensors into.")],
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
    """Write an architecture spec and safetensors weights that Amulet (and its service) load without pickle.

    Either run your own trusted code that builds the model (--entry), or give an architecture name, its
    config, the input shape, the number of classes and a weights-only checkpoint.
    """
    from amulet.exceptions import AmuletError
    from amulet.io import export_model, sha256_file

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
