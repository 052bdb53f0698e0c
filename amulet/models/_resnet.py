"""ResNet (He et al., 2016) from torchvision, with a fresh classification head."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from amulet._validation import Options, check_param
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models._base import AmuletModel, check_bool, check_int

__all__ = ["RESNET_SIZES", "ResNet", "pretrained_weights_path"]

#: torchvision builder and weights enum of each size.
RESNET_SIZES: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet34": ("resnet34", "ResNet34_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "resnet101": ("resnet101", "ResNet101_Weights"),
    "resnet152": ("resnet152", "ResNet152_Weights"),
}

#: Raised when ``pretrained=True`` and no ImageNet weights file is in the local torch hub cache.
PRETRAINED_MISSING_MESSAGE = (
    "The 'pretrained' parameter of ResNet is True, but the ImageNet weights of {size} are not in the local "
    "torch hub cache (looked for {candidates} in {directory}). Amulet never downloads weights while "
    'building a model. On a machine with internet run: python -c "import torchvision; '
    "torchvision.models.{builder}(weights='DEFAULT')\", then copy the file into {directory} (or point "
    "TORCH_HOME at a directory holding hub/checkpoints/<file>); or use pretrained=False."
)


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(min(32, channels), channels)


def pretrained_weights_path(size: str) -> Path | None:
    """Path of cached ImageNet weights of ``size`` in the torch hub cache, or ``None`` if there are none.

    The torch hub cache is ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default);
    torchvision's default weights are preferred, any other published version is accepted.
    """
    import torchvision

    weights_enum = getattr(torchvision.models, RESNET_SIZES[size][1])
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    members = [weights_enum.DEFAULT, *[w for w in weights_enum if w is not weights_enum.DEFAULT]]
    for weights in members:
        candidate = directory / Path(urlparse(weights.url).path).name
        if candidate.is_file():
            return candidate
    return None


class ResNet(AmuletModel):
    """A torchvision ResNet backbone (``features``, its ``fc`` removed) followed by a new ``classifier``.

    resnet18/34 get one linear layer (512 -> classes); resnet50/101/152 get
    ``Linear(2048, 1024) -> ReLU -> Dropout(0.3) -> Linear(1024, 512) -> ReLU -> Dropout(0.3) -> Linear(512, classes)``,
    as in upstream Amulet.

    Args:
        size (str): One of ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``, ``"resnet152"``.
            Default ``"resnet18"``.
        pretrained (bool): Start the backbone from torchvision's ImageNet weights. They are read only from
            the local torch hub cache (``torch.hub.get_dir()/checkpoints``), never downloaded here, with
            ``torch.load(weights_only=True)``; a missing file raises ``FileNotFoundError`` naming the file
            and how to get it. Default ``False`` (random initialisation).
        num_classes (int): Number of output classes. Default 10.
        replace_first (bool): Replace the 7x7 stride-2 stem convolution by a 3x3 stride-1 one and drop the
            first max-pool, for small (e.g. 32x32) images. Default ``True``.
        input_channels (int): Keyword-only. Channels of the input images; any value other than 3 replaces
            the stem convolution (randomly initialised). Default 3.
        batch_norm (bool): Keyword-only. ``False`` replaces every BatchNorm of the backbone by
            ``GroupNorm(min(32, C), C)`` (what DP-SGD with Opacus needs). Default ``True``.

    Raises:
        InvalidParameterError: naming the parameter, when one is out of range or of the wrong type.
        FileNotFoundError: ``pretrained=True`` and the weights are not in the local torch hub cache.

    Example:
        >>> import torch
        >>> from amulet.models import ResNet
        >>> model = ResNet("resnet18", num_classes=10).eval()
        >>> model(torch.zeros(2, 3, 32, 32)).shape, model.get_hidden(torch.zeros(2, 3, 32, 32)).shape
        (torch.Size([2, 10]), torch.Size([2, 512]))
    """

    architecture = "resnet"

    def __init__(
        self,
        size: str = "resnet18",
        pretrained: bool = False,
        num_classes: int = 10,
        replace_first: bool = True,
        *,
        input_channels: int = 3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_param(owner, "size", size, [Options(tuple(RESNET_SIZES))])
        self.size = size
        self.pretrained = check_bool(owner, "pretrained", pretrained)
        self.num_classes = check_int(owner, "num_classes", num_classes)
        self.replace_first = check_bool(owner, "replace_first", replace_first)
        self.input_channels = check_int(owner, "input_channels", input_channels)
        self.batch_norm = check_bool(owner, "batch_norm", batch_norm)
        if self.pretrained and not self.batch_norm:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="batch_norm",
                    owner=owner,
                    expected="True when pretrained=True (the ImageNet weights include BatchNorm statistics)",
                    value=batch_norm,
                )
            )

        import torchvision

        builder = getattr(torchvision.models, RESNET_SIZES[size][0])
        norm_layer = None if self.batch_norm else _group_norm
        backbone = builder(weights=None, norm_layer=norm_layer)
        if self.pretrained:
            path = pretrained_weights_path(size)
            if path is None:
                weights_enum = getattr(torchvision.models, RESNET_SIZES[size][1])
                directory = Path(torch.hub.get_dir()) / "checkpoints"
                names = sorted({Path(urlparse(w.url).path).name for w in weights_enum})
                raise FileNotFoundError(
                    PRETRAINED_MISSING_MESSAGE.format(
                        size=size, candidates=names, directory=directory, builder=RESNET_SIZES[size][0]
                    )
                )
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if self.replace_first:
            backbone.conv1 = nn.Conv2d(self.input_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            backbone.maxpool = nn.Identity()
        elif self.input_channels != 3:
            backbone.conv1 = nn.Conv2d(self.input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        backbone.fc = nn.Identity()
        self.features = backbone

        if size in ("resnet18", "resnet34"):
            self.classifier: nn.Module = nn.Linear(512, self.num_classes)
        else:
            self.classifier = nn.Sequential(
                nn.Linear(2048, 1024),
                nn.ReLU(),
                nn.Dropout(p=0.3),
                nn.Linear(1024, 512),
                nn.ReLU(),
                nn.Dropout(p=0.3),
                nn.Linear(512, self.num_classes),
            )

    def architecture_config(self) -> dict[str, Any]:
        """``{"size": ..., "replace_first": bool, "batch_norm": bool}`` (``pretrained`` is not needed to rebuild)."""
        return {"size": self.size, "replace_first": self.replace_first, "batch_norm": self.batch_norm}
