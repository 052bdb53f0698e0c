"""Metrics of model extraction: accuracy of both models, fidelity, correct fidelity."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.utils import loader_batches

__all__ = ["evaluate_extraction"]


@torch.no_grad()
def evaluate_extraction(
    target_model: nn.Module, attack_model: nn.Module, data_loader: DataLoader, device: str | torch.device
) -> dict[str, float]:
    """Compare a stolen model with its target on labelled data.

    Args:
        target_model: The extracted model.
        attack_model: The stolen surrogate.
        data_loader: Labelled evaluation data, (x, y) or (x, y, z) batches.
        device: Torch device.

    Returns:
        Percentages (0-100):
            ``target_accuracy``, ``stolen_accuracy``;
            ``fidelity``: inputs on which the two models predict the same class;
            ``correct_fidelity``: of the inputs on which they agree, the share where they are also correct
            (0 when they agree nowhere; all four are 0 for empty data).
    """
    target_model.eval().to(device)
    attack_model.eval().to(device)
    total = agree = target_correct = stolen_correct = both_correct = 0
    for batch in loader_batches(data_loader):
        x, y = batch[0].to(device), batch[1].to(device)
        t = target_model(x).argmax(1)
        s = attack_model(x).argmax(1)
        total += len(y)
        agree += int((t == s).sum())
        target_correct += int((t == y).sum())
        stolen_correct += int((s == y).sum())
        both_correct += int(((t == y) & (s == y)).sum())

    def pct(num: int, den: int) -> float:
        return 100.0 * num / den if den else 0.0

    return {
        "target_accuracy": pct(target_correct, total),
        "stolen_accuracy": pct(stolen_correct, total),
        "fidelity": pct(agree, total),
        "correct_fidelity": pct(both_correct, agree),
    }
