"""Base class of the data reconstruction attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["DataReconstructionAttack"]


class DataReconstructionAttack(ABC):
    """An attack that reconstructs representative training inputs from a model.

    Args:
        target_model: The model to invert.
        input_size: Shape of one model input (e.g. ``(1, 28, 28)`` or ``(n_features,)``).
        output_size: Number of classes.
        device: Torch device.
    """

    def __init__(
        self,
        target_model: nn.Module,
        input_size: tuple[int, ...] | int,
        output_size: int,
        device: str | torch.device,
    ):
        self.target_model = target_model
        self.input_size = input_size
        self.output_size = output_size
        self.device = device

    @abstractmethod
    def attack(self) -> list[torch.Tensor]:
        """Run the attack: one reconstruction per class."""
