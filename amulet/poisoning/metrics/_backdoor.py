"""Poisoning metrics."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.utils import get_accuracy

__all__ = ["backdoor_success_rate"]


def backdoor_success_rate(model: nn.Module, triggered_loader: DataLoader, device: str | torch.device) -> float:
    """Percent of triggered inputs classified as the attacker's label.

    Args:
        model: The (possibly) backdoored model.
        triggered_loader: Loader of :meth:`BadNets.poison_test`'s dataset (triggered inputs labelled with the
            trigger label).
        device: Torch device.

    Returns:
        Attack success rate in percent (0-100); 0 for an empty loader.
    """
    return get_accuracy(model, triggered_loader, device, warn_degenerate=False)
