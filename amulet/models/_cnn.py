"""A small convolutional network (the BadNets-style MNIST CNN), any channel count and input size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from amulet.models._base import (
    AmuletModel,
    check_bool,
    check_int,
    check_int_list,
    check_pair_list,
    check_size,
    explain_batch_of_one,
)

__all__ = ["SimpleCNN"]

DEFAULT_CONV_CHANNELS_KERNEL = ((20, 5), (50, 5))
DEFAULT_FC_LAYERS = (500,)


class SimpleCNN(AmuletModel):
    """``[Conv2d (same padding) -> (BatchNorm2d) -> ReLU -> MaxPool2d(2)] * n -> [Linear -> ReLU] * m -> Linear``.

    Reference: Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain", 2017.

    The fully connected part is sized for ``input_size`` (28x28 by default, as upstream Amulet). The
    max-pools use ``ceil_mode=True`` so small inputs never shrink to nothing, and an adaptive average pool
    brings any other input size to the feature-map size ``input_size`` gives, so the network runs on any
    channel count (``input_channels``) and any image size; on ``input_size`` images the adaptive pool is the
    identity.

    Args:
        conv_channels_kernel (list[tuple[int, int]] | None): ``(out_channels, kernel_size)`` of each
            convolution. Default ``None`` means ``[(20, 5), (50, 5)]``.
        fc_layers (list[int] | None): Widths of the hidden fully connected layers (may be empty). Default
            ``None`` means ``[500]``.
        num_classes (int): Number of output classes. Default 10.
        input_channels (int): Channels of the input images. Default 1.
        input_size (int | tuple[int, int]): Keyword-only. Image size ``(height, width)`` (or one int for
            square images) the classifier is sized for. Default 28.
        batch_norm (bool): Keyword-only. BatchNorm2d after every convolution. Default ``False`` (upstream
            SimpleCNN has none).

    Raises:
        InvalidParameterError: naming the parameter, when one is out of range or of the wrong type.

    Example:
        >>> import torch
        >>> from amulet.models import SimpleCNN
        >>> model = SimpleCNN([(12, 5), (24, 5)], [256], num_classes=10).eval()
        >>> model(torch.zeros(2, 1, 28, 28)).shape, model.get_hidden(torch.zeros(2, 1, 28, 28)).shape
        (torch.Size([2, 10]), torch.Size([2, 256]))
    """

    architecture = "simplecnn"

    def __init__(
        self,
        conv_channels_kernel: Sequence[tuple[int, int]] | None = None,
        fc_layers: Sequence[int] | None = None,
        num_classes: int = 10,
        input_channels: int = 1,
        *,
        input_size: int | tuple[int, int] = 28,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        convs = DEFAULT_CONV_CHANNELS_KERNEL if conv_channels_kernel is None else conv_channels_kernel
        self.conv_channels_kernel = check_pair_list(owner, "conv_channels_kernel", convs)
        fcs = DEFAULT_FC_LAYERS if fc_layers is None else fc_layers
        self.fc_layers = check_int_list(owner, "fc_layers", fcs, allow_empty=True)
        self.num_classes = check_int(owner, "num_classes", num_classes)
        self.input_channels = check_int(owner, "input_channels", input_channels)
        self.input_size = check_size(owner, "input_size", input_size)
        self.batch_norm = check_bool(owner, "batch_norm", batch_norm)

        layers: list[nn.Module] = []
        channels = self.input_channels
        height, width = self.input_size
        for out_channels, kernel_size in self.conv_channels_kernel:
            padding = kernel_size // 2
            layers.append(nn.Conv2d(channels, out_channels, kernel_size, padding=padding))
            if self.batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers += [nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
            # Same padding keeps odd kernels' size; even kernels add one pixel. Pooling halves, rounding up.
            height = math.ceil((height + 2 * padding - kernel_size + 1) / 2)
            width = math.ceil((width + 2 * padding - kernel_size + 1) / 2)
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((height, width))

        hidden: list[nn.Module] = [nn.Flatten()]
        size = channels * height * width
        for fc in self.fc_layers:
            hidden += [nn.Linear(size, fc), nn.ReLU()]
            size = fc
        self.hidden = nn.Sequential(*hidden)
        self.classifier = nn.Linear(size, self.num_classes)

    @explain_batch_of_one
    def get_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Input of the last linear layer, shape ``(batch, fc_layers[-1])`` (flattened conv features if none)."""
        return self.hidden(self.pool(self.features(x)))

    def architecture_config(self) -> dict[str, Any]:
        """``{"conv_channels_kernel": [[c, k], ...], "fc_layers": [...], "batch_norm": bool}``."""
        return {
            "conv_channels_kernel": [list(pair) for pair in self.conv_channels_kernel],
            "fc_layers": list(self.fc_layers),
            "batch_norm": self.batch_norm,
        }

    def default_input_shape(self) -> tuple[int, ...]:
        """``(input_channels, height, width)``."""
        return (self.input_channels, *self.input_size)
