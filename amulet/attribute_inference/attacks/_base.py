"""Base class of the attribute inference attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import nn

__all__ = ["AttributeInferenceAttack"]


class AttributeInferenceAttack(ABC):
    """An attack that infers records' sensitive attributes from a model's outputs.

    Args:
        target_model: The model whose outputs are attacked.
        x_train_adv: The adversary's own records (features as the target model takes them).
        x_test: The records whose sensitive attributes are inferred.
        z_train_adv: Sensitive attributes of ``x_train_adv``, one column per attribute.
        device: Torch device used to query the target model.
    """

    def __init__(
        self,
        target_model: nn.Module,
        x_train_adv: np.ndarray | torch.Tensor,
        x_test: np.ndarray | torch.Tensor,
        z_train_adv: np.ndarray | torch.Tensor,
        device: str | torch.device,
    ):
        self.target_model = target_model
        self.x_train_adv = x_train_adv
        self.x_test = x_test
        self.z_train_adv = z_train_adv
        self.device = device

    @abstractmethod
    def attack(self) -> dict[int, dict[str, np.ndarray]]:
        """Run the attack: ``{attr_index: {"predictions": bool array, "confidence_values": float array}}``."""
