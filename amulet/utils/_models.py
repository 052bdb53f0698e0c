"""``initialize_model``: build a model from an architecture name and a capacity (m1 ... m4)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from amulet._validation import Options, check_param
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError

__all__ = ["DEFAULT_CAPACITY_MAP", "initialize_model"]

logger = logging.getLogger(__name__)

#: Capacity m1 ... m4 of each built-in architecture (read-only by convention: copy it to customise).
DEFAULT_CAPACITY_MAP: dict[str, dict[str, Any]] = {
    "linearnet": {
        "m1": [128, 256, 128],
        "m2": [256, 512, 256],
        "m3": [512, 1024, 512],
        "m4": [512, 1024, 1024, 512],
    },
    "vgg": {"m1": "VGG11", "m2": "VGG13", "m3": "VGG16", "m4": "VGG19"},
    "resnet": {"m1": "resnet34", "m2": "resnet50", "m3": "resnet101", "m4": "resnet152"},
    "cnn": {
        "m1": {"conv_channels_kernel": [(12, 5), (24, 5)], "fc_layers": [256]},
        "m2": {"conv_channels_kernel": [(20, 5), (50, 5)], "fc_layers": [512]},
        "m3": {"conv_channels_kernel": [(32, 5), (64, 5)], "fc_layers": [768]},
        "m4": {"conv_channels_kernel": [(32, 5), (64, 5), (128, 3)], "fc_layers": [1024, 512]},
    },
}

_ALIASES = {"simplecnn": "cnn", "linear_net": "linearnet"}
_IMAGE_ARCHS = ("cnn", "vgg", "resnet")
#: Largest int ``num_features`` read as a channel count by the image architectures.
MAX_CHANNELS = 16
_DEFAULT_SIZE = {"cnn": 28, "vgg": 32, "resnet": 32}


def _image_shape(arch: str, num_features: Any, input_shape: Any) -> tuple[int, int, int]:
    """Resolve ``(channels, height, width)`` for an image architecture (see :func:`initialize_model`)."""
    owner = "initialize_model"
    shape = input_shape if input_shape is not None else num_features
    name = "input_shape" if input_shape is not None else "num_features"
    if isinstance(shape, Sequence) and not isinstance(shape, (str, bytes)):
        dims = tuple(shape)
        if len(dims) == 2:
            dims = (1, *dims)
        if len(dims) == 3 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            return dims  # type: ignore[return-value]
    elif isinstance(shape, int) and not isinstance(shape, bool) and shape > 0 and input_shape is None:
        if shape <= MAX_CHANNELS:
            return (shape, _DEFAULT_SIZE[arch], _DEFAULT_SIZE[arch])
        # A flattened square image with 1 or 3 channels (n = s*s or 3*s*s; never both for integer s).
        for channels in (1, 3):
            side = math.isqrt(shape // channels)
            if shape % channels == 0 and side * side * channels == shape:
                return (channels, side, side)
    expected = (
        "a (channels, height, width) shape, a channel count <= 16, or the flattened size of a square image "
        "with 1 or 3 channels (e.g. 784 = 1x28x28, 3072 = 3x32x32)"
    )
    raise InvalidParameterError(PARAM_MESSAGE.format(name=name, owner=owner, expected=expected, value=shape))


def initialize_model(
    model_arch: str,
    model_capacity: str,
    num_features: int | Sequence[int],
    num_classes: int,
    log: logging.Logger | None = None,
    batch_norm: bool = True,
    model_conf: Mapping[str, Mapping[str, Any]] = DEFAULT_CAPACITY_MAP,
    resnet_replace_first: bool = True,
    *,
    input_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Create a randomly initialised model of ``model_arch`` at capacity ``model_capacity``.

    Weight initialisation draws from torch's global generator; wrap the call in
    :func:`amulet.utils.seeded_init` for a reproducible model.

    Args:
        model_arch: ``"linearnet"``, ``"cnn"`` (alias ``"simplecnn"``), ``"vgg"`` or ``"resnet"``; or any
            other architecture of :mod:`amulet.models`' registry that ``model_conf`` maps to a config dict.
        model_capacity: A key of ``model_conf[model_arch]``: ``"m1"`` ... ``"m4"`` by default (vgg:
            VGG11/13/16/19; resnet: resnet34/50/101/152; linearnet: [128,256,128] ... [512,1024,1024,512];
            cnn: [(12,5),(24,5)]/[256] ... [(32,5),(64,5),(128,3)]/[1024,512]).
        num_features: For linearnet, the number of input features (a shape is flattened). For the image
            architectures (cnn, vgg, resnet): the input's ``(C, H, W)`` shape, or an int: at most 16 is the
            channel count (height and width then default to 28 for cnn, 32 otherwise; vgg and resnet work
            on any size anyway), larger is the flattened size of a square 1- or 3-channel image
            (784 -> 1x28x28, 3072 -> 3x32x32).
        num_classes: Number of output classes.
        log: Logger for the "model initialised" message (default: this module's logger).
        batch_norm: Use BatchNorm (linearnet, cnn, vgg); for resnet ``False`` swaps BatchNorm for GroupNorm.
        model_conf: Capacity map, ``{arch: {capacity: value}}``. Default :data:`DEFAULT_CAPACITY_MAP`.
        resnet_replace_first: ResNet only: 3x3 stride-1 stem without max-pool (small images).
        input_shape: Keyword-only. Explicit ``(C, H, W)`` for image architectures (overrides
            ``num_features``); for linearnet its product must equal ``num_features``.

    Returns:
        The model (an :class:`amulet.models.AmuletModel` for the built-ins), in training mode, on the CPU.

    Raises:
        InvalidParameterError: unknown ``model_arch`` or ``model_capacity`` or a bad shape, naming it.

    Example:
        >>> from amulet.utils import initialize_model
        >>> initialize_model("linearnet", "m1", 20, 2).hidden_layer_sizes
        [128, 256, 128]
        >>> initialize_model("vgg", "m1", (1, 28, 28), 10).input_channels
        1
    """
    from amulet.models import VGG, LinearNet, ResNet, SimpleCNN, architectures, create_model

    log = log or logger
    owner = "initialize_model"
    arch = _ALIASES.get(model_arch, model_arch) if isinstance(model_arch, str) else model_arch
    known = sorted(set(model_conf) | {alias for alias, target in _ALIASES.items() if target in model_conf})
    check_param(owner, "model_arch", model_arch, [Options(known)])
    capacities = model_conf[arch]
    check_param(owner, "model_capacity", model_capacity, [Options(sorted(capacities))])
    value = capacities[model_capacity]

    model: nn.Module
    if arch == "linearnet":
        n_features: Any = num_features
        if isinstance(num_features, Sequence) and not isinstance(num_features, (str, bytes)):
            n_features = math.prod(num_features)
        if input_shape is not None and math.prod(input_shape) != n_features:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="input_shape", owner=owner, expected=f"a shape of {n_features} features", value=input_shape
                )
            )
        model = LinearNet(n_features, num_classes, hidden_layer_sizes=list(value), batch_norm=batch_norm)
    elif arch in _IMAGE_ARCHS:
        channels, height, width = _image_shape(arch, num_features, input_shape)
        if arch == "cnn":
            model = SimpleCNN(
                value["conv_channels_kernel"],
                value["fc_layers"],
                num_classes,
                channels,
                input_size=(height, width),
                batch_norm=batch_norm,
            )
        elif arch == "vgg":
            model = VGG(num_classes, value, batch_norm, input_channels=channels)
        else:
            model = ResNet(
                value, False, num_classes, resnet_replace_first, input_channels=channels, batch_norm=batch_norm
            )
    elif arch in architectures() and isinstance(value, Mapping):
        config = dict(value)
        config.setdefault("num_classes", num_classes)
        if input_shape is not None:
            config.setdefault("input_shape", tuple(input_shape))
        elif isinstance(num_features, Sequence):
            config.setdefault("input_shape", tuple(num_features))
        else:
            config.setdefault("input_shape", (num_features,))
        model = create_model(arch, **config)
    else:
        raise InvalidParameterError(
            f"model_conf[{arch!r}][{model_capacity!r}] must be a config dict for a registered architecture "
            f"(known: {', '.join(architectures())}); got {value!r}."
        )
    log.info(
        "Model initialized: %s %s (%d parameters)", arch, model_capacity, sum(p.numel() for p in model.parameters())
    )
    return model
