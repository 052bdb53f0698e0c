"""Evaluation helpers: accuracy, fidelity, predictions and intermediate features.

Loaders are read through :func:`~amulet.utils.loader_batches`: a ``DataLoader`` over tensors gives the same
batches, indexed in one operation each instead of row by row.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.utils._training import loader_batches
from amulet.utils._utility import check_utility

__all__ = ["get_accuracy", "get_fidelity", "get_intermediate_features", "get_predictions_numpy", "predict_logits"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``x``, computed in batches, returned on the CPU."""
    model.eval().to(device)
    outs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def get_accuracy(
    model: nn.Module, data_loader: DataLoader, device: torch.device | str, *, warn_degenerate: bool = True
) -> float:
    """Accuracy of ``model`` on ``data_loader``, in percent (0-100).

    When the model is degenerate on these rows (:func:`amulet.utils.check_utility`: (near-)constant
    predictions, or accuracy not significantly above the majority rate) a warning is logged through
    ``logging`` (logger ``amulet.utils._evaluation``), since any risk measured on such a model describes a
    constant function. The return value is unchanged.

    Args:
        model: The classifier (put in eval mode).
        data_loader: Batches of ``(x, y, ...)``.
        device: Torch device.
        warn_degenerate: Log the degenerate-model warning (``False`` where a collapse is the expected
            outcome, e.g. accuracy on adversarial examples).
    """
    model.eval().to(device)
    correct, total = 0, 0
    truths, preds = [], []
    for batch in loader_batches(data_loader):
        x, y = batch[0].to(device), batch[1].to(device)
        pred = model(x).argmax(1)
        correct += (pred == y).sum().item()
        total += len(y)
        truths.append(y.reshape(-1).cpu())
        preds.append(pred.reshape(-1).cpu())
    if not total:
        return 0.0
    if warn_degenerate:
        utility = check_utility(torch.cat(truths), torch.cat(preds))
        if utility.degenerate:
            logger.warning(
                "get_accuracy: the %s model is degenerate on these %d rows: %s. On clean test rows this means "
                "risk metrics measured on it describe a (near-)constant model: check its training (epochs, "
                "learning rate, noise). On adversarial or triggered rows it may be the attack working "
                "(pass warn_degenerate=False there).",
                type(model).__name__,
                total,
                utility.reason,
            )
    return 100.0 * correct / total


@torch.no_grad()
def get_fidelity(model_1: nn.Module, model_2: nn.Module, data_loader: DataLoader, device: torch.device | str) -> float:
    """Percent of inputs on which both models predict the same class."""
    model_1.eval().to(device)
    model_2.eval().to(device)
    same, total = 0, 0
    for batch in loader_batches(data_loader):
        x = batch[0].to(device)
        same += (model_1(x).argmax(1) == model_2(x).argmax(1)).sum().item()
        total += len(x)
    return 100.0 * same / total if total else 0.0


@torch.no_grad()
def get_predictions_numpy(
    input_data: np.ndarray | torch.Tensor, model: nn.Module, batch_size: int, device: torch.device | str
) -> np.ndarray:
    """Logits of ``model`` (eval mode) on ``input_data`` as a NumPy array of shape (n, n_classes)."""
    x = torch.as_tensor(np.asarray(input_data) if not isinstance(input_data, torch.Tensor) else input_data)
    return predict_logits(model, x.float(), batch_size=batch_size, device=device).numpy()


@torch.no_grad()
def get_intermediate_features(
    model: nn.Module, data_loader: DataLoader, device: torch.device | str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penultimate features (``model.get_hidden``), targets and inputs, each concatenated as NumPy arrays.

    Works with any batch size (including a last batch of one) and keeps the channel axis of images.
    """
    model.eval().to(device)
    feats, targets, inputs = [], [], []
    for batch in loader_batches(data_loader):
        x, y = batch[0], batch[1]
        get_hidden = getattr(model, "get_hidden", model)
        hidden = get_hidden(x.to(device))
        feats.append(hidden.reshape(len(x), -1).float().cpu().numpy())
        targets.append(np.asarray(y).reshape(-1))
        inputs.append(x.cpu().numpy())
    if not feats:
        return np.empty((0, 0), np.float32), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(feats), np.concatenate(targets), np.concatenate(inputs)
