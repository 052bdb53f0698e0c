"""Pre-flight check of an uploaded model against a dataset, before any training or attack runs."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from amulet.exceptions import ModelSpecError
from amulet.io._graph import load_graph_model

__all__ = ["preflight_graph_model"]


def preflight_graph_model(
    path_or_module: str | Path | nn.Module,
    input_shape: tuple[int, ...] | list[int],
    num_classes: int,
    *,
    batch_size: int = 4,
    sample: torch.Tensor | None = None,
) -> None:
    """Check that a model fits a dataset and that Amulet can attack and retrain it.

    Checks, in order: the model's input shape and class count against the dataset's; a forward pass on a
    batch gives finite logits of shape (batch, classes); the loss's gradient reaches the input and is
    finite (PGD, inversion); a training-mode forward and backward pass works.

    Args:
        path_or_module: A ``.pt2``/``.onnx`` path or a loaded module.
        input_shape: The dataset's shape of one example.
        num_classes: The dataset's number of classes.
        batch_size: Rows of the probe batch (uniform in [0, 1], seeded, unless ``sample`` is given).
        sample: Real rows to probe with (e.g. the dataset's first rows).

    Raises:
        ModelSpecError: naming what does not fit and the fix.
        UnsafeModelFileError: from loading a path.
    """
    input_shape = tuple(int(v) for v in input_shape)
    model = load_graph_model(path_or_module) if isinstance(path_or_module, (str, Path)) else path_or_module
    model_shape = getattr(model, "input_shape", None)
    if model_shape is not None and tuple(model_shape) != input_shape:
        raise ModelSpecError(
            f"The model takes inputs of shape {list(model_shape)} but the dataset's examples have shape "
            f"{list(input_shape)}. Export the model with the dataset's input shape (amulet export-model "
            f"--input-shape {','.join(map(str, input_shape))}, or --dataset NAME)."
        )
    model_classes = getattr(model, "num_classes", None)
    if model_classes is not None and int(model_classes) != int(num_classes):
        raise ModelSpecError(
            f"The model outputs {model_classes} logits but the dataset has {num_classes} classes. Give the model a "
            f"final layer with {num_classes} outputs."
        )
    if sample is not None:
        x = sample[:batch_size].detach().clone().float()
    else:
        x = torch.rand((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    model = copy.deepcopy(model).cpu()
    model.eval()
    x.requires_grad_(True)
    try:
        logits = model(x)
    except Exception as exc:
        raise ModelSpecError(
            f"The model's forward pass fails on a batch of shape {list(x.shape)}: {type(exc).__name__}: "
            f"{str(exc)[:300]}. Check that it was exported for inputs of shape {list(input_shape)} with a dynamic "
            "batch axis."
        ) from exc
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), int(num_classes)):
        shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelSpecError(
            f"The model returns {shape} for a batch of {len(x)}; Amulet needs logits of shape "
            f"[{len(x)}, {num_classes}] (one row of {num_classes} class scores per example)."
        )
    if not bool(torch.isfinite(logits).all()):
        raise ModelSpecError(
            "The model's logits are not finite (NaN or Inf) on a batch of inputs in the dataset's range; check the "
            "uploaded weights."
        )
    loss = nn.functional.cross_entropy(logits, torch.arange(len(x)) % int(num_classes))
    try:
        (grad,) = torch.autograd.grad(loss, x)
    except RuntimeError as exc:
        raise ModelSpecError(
            f"Gradients do not flow from the model's loss to its input ({str(exc)[:200]}); evasion (PGD) and "
            "inversion attacks need them. Remove detach()/no_grad/integer casts from the forward pass."
        ) from exc
    if not bool(torch.isfinite(grad).all()):
        raise ModelSpecError("The gradient of the loss with respect to the input is not finite (NaN or Inf).")
    if float(grad.abs().sum()) == 0.0:
        raise ModelSpecError(
            "The gradient of the loss with respect to the input is zero everywhere: the model's output does not "
            "depend on its input differentiably (evasion and inversion attacks need it). Remove detach(), "
            "rounding or argmax from the forward pass."
        )
    model.train()
    try:
        nn.functional.cross_entropy(model(x.detach()), torch.arange(len(x)) % int(num_classes)).backward()
    except Exception as exc:
        raise ModelSpecError(
            f"The model cannot be trained (a training-mode forward/backward pass fails: {type(exc).__name__}: "
            f"{str(exc)[:200]}); defenses and shadow models retrain it."
        ) from exc
    if not any(p.grad is not None for p in model.parameters()):
        raise ModelSpecError("No parameter of the model receives a gradient, so it cannot be retrained.")
