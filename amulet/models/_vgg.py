"""VGG (Simonyan and Zisserman, 2015) for small images, any channel count and any input size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models._base import AmuletModel, check_bool, check_int

__all__ = ["VGG", "VGG_CONFIGS"]

#: Layer configurations by name: an int is a 3x3 convolution with that many output channels, "M" a 2x2 max-pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "VGG11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "VGG19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _resolve_layer_config(owner: str, layer_config: Any) -> list[int | str]:
    if layer_config is None:
        return list(VGG_CONFIGS["VGG11"])
    if isinstance(layer_config, str):
        key = layer_config.upper()
        if key in VGG_CONFIGS:
            return list(VGG_CONFIGS[key])
    elif isinstance(layer_config, Sequence) and any(isinstance(v, int) for v in layer_config):
        ok = all((isinstance(v, int) and not isinstance(v, bool) and v > 0) or v == "M" for v in layer_config)
        if ok:
            return list(layer_config)
    expected = (
        f"None, one of {sorted(VGG_CONFIGS)} or a list of positive ints (3x3 convolutions) and 'M' "
        "(max-pools) with at least one convolution"
    )
    raise InvalidParameterError(
        PARAM_MESSAGE.format(name="layer_config", owner=owner, expected=expected, value=layer_config)
    )


class VGG(AmuletModel):
    """VGG network: 3x3 convolutions (with optional BatchNorm) and max-pools, then one linear classifier.

    Unlike upstream Amulet (3x32x32 only), this VGG takes any channel count (``input_channels``) and any
    input size: the max-pools use ``ceil_mode=True`` so small inputs (e.g. 28x28 Fashion-MNIST, which the
    five pools of VGG would shrink to nothing) keep at least one pixel, and an adaptive average pool
    reduces the last feature map to one value per channel. On 3x32x32 inputs the network is exactly the
    classic CIFAR VGG (each pool halves 32 -> 1, the adaptive pool is then the identity).

    Args:
        num_classes (int): Number of output classes. Default 10.
        layer_config (list[int | str] | str | None): Layer list (ints are convolution widths, ``"M"`` is a
            max-pool) or a name from :data:`VGG_CONFIGS` (``"VGG11"``, ``"VGG13"``, ``"VGG16"``,
            ``"VGG19"``). Default ``None`` means VGG11.
        batch_norm (bool): BatchNorm2d after every convolution. Default ``True``. With BatchNorm, training on
            a batch of one sample raises a ``ValueError`` that says how to avoid it.
        input_channels (int): Keyword-only. Channels of the input images (1 for (F)MNIST, 3 for CIFAR).
            Default 3.

    Raises:
        InvalidParameterError: naming the parameter, when one is out of range or of the wrong type.

    Example:
        >>> import torch
        >>> from amulet.models import VGG
        >>> model = VGG(10, "VGG11", input_channels=1).eval()
        >>> model(torch.zeros(2, 1, 28, 28)).shape, model.get_hidden(torch.zeros(2, 1, 28, 28)).shape
        (torch.Size([2, 10]), torch.Size([2, 512]))
    """

    architecture = "vgg"

    def __init__(
        self,
        num_classes: int = 10,
        layer_config: Sequence[int | str] | str | None = None,
        batch_norm: bool = True,
        *,
        input_channels: int = 3,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_int(owner, "num_classes", num_classes)
        self.layer_config = _resolve_layer_config(owner, layer_config)
        self.batch_norm = check_bool(owner, "batch_norm", batch_norm)
        self.input_channels = check_int(owner, "input_channels", input_channels)

        layers: list[nn.Module] = []
        channels = self.input_channels
        for item in self.layer_config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            width = int(item)
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
            if self.batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, self.num_classes)

    def architecture_config(self) -> dict[str, Any]:
        """``{"layer_config": [...], "batch_norm": bool}``."""
        return {"layer_config": list(self.layer_config), "batch_norm": self.batch_norm}
