"""``initialize_model``: a model from an architecture name and a capacity (m1 ... m4), as upstream Amulet 0.6.0."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models import (
    ALIASES,
    BUILTIN_CAPACITIES,
    VGG,
    VGG_CONFIGS,
    LinearNet,
    ResNet,
    SimpleCNN,
    architectures,
    canonical_architecture,
    create_model,
)

__all__ = ["CAPACITY_CONFIG", "DEFAULT_CAPACITY_MAP", "CapacityError", "initialize_model"]

logger = logging.getLogger(__name__)

#: Capacities m1 ... m4 of the built-in architectures as fields of their registry configs, keyed by registry
#: name then capacity: :data:`amulet.models.BUILTIN_CAPACITIES`, the one table, under its upstream-era name.
#: :data:`DEFAULT_CAPACITY_MAP` (upstream's shape) is derived from it.
CAPACITY_CONFIG: dict[str, dict[str, dict[str, Any]]] = BUILTIN_CAPACITIES


def _upstream_capacity_map() -> dict[str, dict[str, Any]]:
    capacities = sorted(CAPACITY_CONFIG["linearnet"])
    return {
        capacity: {
            "vgg": list(VGG_CONFIGS[CAPACITY_CONFIG["vgg"][capacity]["layer_config"]]),
            "linearnet": list(CAPACITY_CONFIG["linearnet"][capacity]["hidden_layer_sizes"]),
            "resnet": CAPACITY_CONFIG["resnet"][capacity]["size"],
            "cnn": {
                "conv_layers": [tuple(pair) for pair in CAPACITY_CONFIG["simplecnn"][capacity]["conv_channels_kernel"]],
                "fc_layers": list(CAPACITY_CONFIG["simplecnn"][capacity]["fc_layers"]),
            },
        }
        for capacity in capacities
    }


#: Upstream's capacity map, ``{capacity: {architecture: config}}``: ``"vgg"`` a layer list (VGG11/13/16/19),
#: ``"linearnet"`` the hidden layer sizes, ``"resnet"`` a torchvision ResNet name (resnet34/50/101/152) and
#: ``"cnn"`` ``{"conv_layers": [(channels, kernel), ...], "fc_layers": [...]}``. Read-only by convention:
#: copy it to customise, and pass the copy as ``model_conf``.
DEFAULT_CAPACITY_MAP: dict[str, dict[str, Any]] = _upstream_capacity_map()

#: Upstream's four architecture names, the keys of :data:`DEFAULT_CAPACITY_MAP`'s configs.
_BUILT_IN = ("vgg", "resnet", "linearnet", "cnn")
#: Registry name -> upstream's name, derived from the one alias map (:data:`amulet.models.ALIASES`).
_UPSTREAM_NAME = {canonical_architecture(name): name for name in _BUILT_IN}
#: The input upstream's image models are built for when ``num_features`` is an int (upstream ignores it for
#: them): VGG and ResNet take 3 channels (CIFAR) at any size, SimpleCNN 1 channel at 28x28 ((F)MNIST).
_UPSTREAM_CHANNELS = {"vgg": 3, "resnet": 3, "cnn": 1}


class CapacityError(InvalidParameterError, KeyError):
    """A capacity missing from ``model_conf``, or an architecture missing from a capacity's config.

    A :class:`KeyError` as upstream raises, and an :class:`~amulet.exceptions.InvalidParameterError` as
    Amulet's other bad-parameter errors.
    """


def _image_shape(arch: str, num_features: Any, input_shape: Any) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image architecture's input (see :func:`initialize_model`)."""
    shape = input_shape if input_shape is not None else num_features
    name = "input_shape" if input_shape is not None else "num_features"
    if isinstance(shape, Sequence) and not isinstance(shape, (str, bytes)):
        dims = tuple(shape)
        if len(dims) == 2:
            dims = (1, *dims)
        if len(dims) == 3 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            return dims  # type: ignore[return-value]
    elif isinstance(shape, int) and not isinstance(shape, bool) and input_shape is None:
        return (_UPSTREAM_CHANNELS[arch], 28, 28) if arch == "cnn" else (_UPSTREAM_CHANNELS[arch], 32, 32)
    expected = "a (channels, height, width) or (height, width) shape of positive ints"
    raise InvalidParameterError(
        PARAM_MESSAGE.format(name=name, owner="initialize_model", expected=expected, value=shape)
    )


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
            other architecture of :mod:`amulet.models`' registry that ``model_conf[model_capacity]`` maps to a
            config dict (:func:`amulet.models.create_model` arguments).
        model_capacity: A key of ``model_conf``: ``"m1"`` ... ``"m4"`` by default (vgg: VGG11/13/16/19;
            resnet: resnet34/50/101/152; linearnet: [128,256,128] ... [512,1024,1024,512];
            cnn: [(12,5),(24,5)]/[256] ... [(32,5),(64,5),(128,3)]/[1024,512]).
        num_features: For linearnet, the number of input features (a shape is flattened). For the image
            architectures, an int is ignored as upstream does (upstream's image datasets give ``H * W``,
            which does not say the channels): vgg and resnet are built for 3-channel images (CIFAR; any
            size), cnn for 1x28x28 ((F)MNIST; other sizes run through its adaptive pool). A
            ``(channels, height, width)`` (or ``(height, width)``) shape builds them for that input instead.
        num_classes: Number of output classes.
        log: Logger for the "model initialised" message and the unknown-architecture error (default: this
            module's logger).
        batch_norm: Use BatchNorm (linearnet, vgg); for resnet ``False`` swaps BatchNorm for GroupNorm. cnn
            has no BatchNorm, as upstream (build :class:`amulet.models.SimpleCNN` directly for one with it).
        model_conf: Capacity map in upstream's shape, ``{capacity: {arch: config}}``. Default
            :data:`DEFAULT_CAPACITY_MAP`.
        resnet_replace_first: ResNet only: 3x3 stride-1 stem without max-pool (small images).
        input_shape: Keyword-only. Explicit ``(C, H, W)`` for image architectures (overrides
            ``num_features``); for linearnet its product must equal ``num_features``.

    Returns:
        The model (an :class:`amulet.models.AmuletModel` for the built-ins), in training mode, on the CPU.

    Raises:
        CapacityError: (a ``KeyError``, as upstream) ``model_capacity`` is not a key of ``model_conf``, or
            its config has no entry for ``model_arch``.
        InvalidParameterError: (a ``ValueError``, as upstream) unknown ``model_arch``; or a bad shape or
            model argument, naming it.

    Example:
        >>> from amulet.utils import initialize_model
        >>> initialize_model("linearnet", "m1", 20, 2).hidden_layer_sizes
        [128, 256, 128]
        >>> initialize_model("vgg", "m1", 32 * 32, 10).input_channels  # CIFAR-10, upstream's num_features
        3
        >>> initialize_model("vgg", "m1", (1, 28, 28), 10).input_channels
        1
    """
    log = log or logger
    owner = "initialize_model"
    if not isinstance(model_capacity, str) or model_capacity not in model_conf:
        raise CapacityError(
            f"Capacity '{model_capacity}' not found in model_conf. The 'model_capacity' parameter of {owner} "
            f"must be one of {sorted(model_conf)}."
        )
    capacity_config = model_conf[model_capacity]
    arch: Any = model_arch
    if isinstance(model_arch, str):
        arch = _UPSTREAM_NAME.get(canonical_architecture(model_arch), model_arch)
    registered = isinstance(arch, str) and arch in architectures() and isinstance(capacity_config.get(arch), Mapping)
    if arch not in _BUILT_IN and not registered:
        aliases = {alias for alias, name in ALIASES.items() if name in _UPSTREAM_NAME}
        names = set(_BUILT_IN) | set(_UPSTREAM_NAME) | aliases
        known = sorted(names | {a for a in capacity_config if a in architectures()})
        msg = (
            f"Incorrect model architecture: {model_arch}. The 'model_arch' parameter of {owner} must be one of "
            f"{known}. Got {model_arch!r} instead."
        )
        log.error(msg)
        raise InvalidParameterError(msg)
    if arch not in capacity_config:
        raise CapacityError(
            f"'{arch}' config missing for capacity '{model_capacity}'. Add model_conf[{model_capacity!r}][{arch!r}]."
        )
    value = capacity_config[arch]

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
    elif arch in _UPSTREAM_CHANNELS:
        channels, height, width = _image_shape(arch, num_features, input_shape)
        if arch == "cnn":
            model = SimpleCNN(
                value["conv_layers"],
                value["fc_layers"],
                num_classes,
                channels,
                input_size=(height, width),
            )
        elif arch == "vgg":
            model = VGG(num_classes, value, batch_norm, input_channels=channels)
        else:
            model = ResNet(
                value, False, num_classes, resnet_replace_first, input_channels=channels, batch_norm=batch_norm
            )
    else:
        config = dict(value)
        config.setdefault("num_classes", num_classes)
        if input_shape is not None:
            config.setdefault("input_shape", tuple(input_shape))
        elif isinstance(num_features, Sequence):
            config.setdefault("input_shape", tuple(num_features))
        else:
            config.setdefault("input_shape", (num_features,))
        model = create_model(arch, **config)
    log.info(
        "Model initialized: %s %s (%d parameters)", arch, model_capacity, sum(p.numel() for p in model.parameters())
    )
    return model
