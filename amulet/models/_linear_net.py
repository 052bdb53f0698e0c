"""Fully connected network for tabular data (and flattened images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from amulet.models._base import AmuletModel, check_bool, check_int, check_int_list

__all__ = ["LinearNet"]

DEFAULT_HIDDEN_LAYER_SIZES = (128, 256, 128)


class LinearNet(AmuletModel):
    """A multi-layer perceptron: ``[Linear -> (BatchNorm1d) -> ReLU] * n -> Linear``.

    Inputs of any shape are flattened first, so the network also takes images (``num_features`` is then
    ``C * H * W``).

    Args:
        num_features (int): Number of input features (after flattening). Must be >= 1.
        num_classes (int): Number of output classes (logits). Must be >= 1.
        hidden_layer_sizes (list[int] | None): Width of each hidden layer, in order. Default ``None`` means
            ``[128, 256, 128]``.
        batch_norm (bool): Put a ``BatchNorm1d`` after every hidden ``Linear``. Default ``True``. With
            BatchNorm, a training step on a batch of one sample raises a ``ValueError`` that says how to
            avoid it (``drop_last=True``, ``batch_norm=False`` or ``eval()``); use ``batch_norm=False`` for
            DP-SGD.

    Raises:
        InvalidParameterError: naming the parameter, when one is out of range or of the wrong type.

    Example:
        >>> import torch
        >>> from amulet.models import LinearNet
        >>> model = LinearNet(10, 2, hidden_layer_sizes=[16, 8]).eval()
        >>> model(torch.zeros(4, 10)).shape, model.get_hidden(torch.zeros(4, 10)).shape
        (torch.Size([4, 2]), torch.Size([4, 8]))
    """

    architecture = "linearnet"

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        hidden_layer_sizes: Sequence[int] | None = None,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_features = check_int(owner, "num_features", num_features)
        self.num_classes = check_int(owner, "num_classes", num_classes)
        sizes = DEFAULT_HIDDEN_LAYER_SIZES if hidden_layer_sizes is None else hidden_layer_sizes
        self.hidden_layer_sizes = check_int_list(owner, "hidden_layer_sizes", sizes)
        self.batch_norm = check_bool(owner, "batch_norm", batch_norm)

        layers: list[nn.Module] = [nn.Flatten()]
        width = self.num_features
        for size in self.hidden_layer_sizes:
            layers.append(nn.Linear(width, size))
            if self.batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, self.num_classes)

    def architecture_config(self) -> dict[str, Any]:
        """``{"hidden_layer_sizes": [...], "batch_norm": bool}``."""
        return {"hidden_layer_sizes": list(self.hidden_layer_sizes), "batch_norm": self.batch_norm}

    def default_input_shape(self) -> tuple[int, ...]:
        """``(num_features,)``."""
        return (self.num_features,)
