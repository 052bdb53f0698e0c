"""Evasion metrics: robust accuracy and attack success rate."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.utils import get_accuracy, loader_batches

__all__ = ["attack_success_rate", "robust_accuracy"]


def robust_accuracy(model: nn.Module, adversarial_loader: DataLoader, device: str | torch.device) -> float:
    """Accuracy (percent) of ``model`` on adversarial examples paired with their true labels.

    Args:
        model: The attacked model.
        adversarial_loader: Loader of (x_adv, y_true), e.g. from :meth:`EvasionPGD.attack`.
        device: Torch device.

    Returns:
        Robust accuracy in percent (0-100); 0 for an empty loader.
    """
    return get_accuracy(model, adversarial_loader, device, warn_degenerate=False)


@torch.no_grad()
def attack_success_rate(
    model: nn.Module, clean_loader: DataLoader, adversarial_loader: DataLoader, device: str | torch.device
) -> float:
    """Percent of the inputs ``model`` classifies correctly that the attack makes it misclassify.

    Args:
        model: The attacked model.
        clean_loader: Unshuffled loader of the clean (x, y).
        adversarial_loader: Unshuffled loader of (x_adv, y), aligned row by row with ``clean_loader``.
        device: Torch device.

    Returns:
        Attack success rate in percent (0-100); 0 when the model gets no clean input right.

    Raises:
        ValueError: if the loaders do not hold the same number of rows.
    """
    model.eval().to(device)
    clean_correct = []
    adv_correct = []
    for batch in loader_batches(clean_loader):
        x, y = batch[0].to(device), batch[1].to(device)
        clean_correct.append((model(x).argmax(1) == y).cpu())
    for batch in loader_batches(adversarial_loader):
        x, y = batch[0].to(device), batch[1].to(device)
        adv_correct.append((model(x).argmax(1) == y).cpu())
    clean = torch.cat(clean_correct) if clean_correct else torch.empty(0, dtype=torch.bool)
    adv = torch.cat(adv_correct) if adv_correct else torch.empty(0, dtype=torch.bool)
    if len(clean) != len(adv):
        raise ValueError(
            f"clean_loader and adversarial_loader must hold the same rows; got {len(clean)} and {len(adv)} rows."
        )
    n_correct = int(clean.sum())
    if n_correct == 0:
        return 0.0
    return 100.0 * int((clean & ~adv).sum()) / n_correct
