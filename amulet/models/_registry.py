"""Registry of model architectures: the built-in zoo plus operators' entry points.

An *architecture* is a name bound to a factory ``factory(*, num_classes, input_shape, **config) -> nn.Module``.
Specs (:class:`amulet.io.ArchitectureSpec`), the assessment engine and the service build models only through
:func:`create_model`, so a model file never has to carry code.

Operators add their own architectures, without touching Amulet, through the Python entry-point group
``amulet.architectures`` (loaded lazily, the first time the registry is read), e.g. in their
``pyproject.toml``::

    [project.entry-points."amulet.architectures"]
    mynet = "my_package.models:build_mynet"

where ``build_mynet(*, num_classes, input_shape, **config)`` returns an ``nn.Module``. An entry point may also
point at an :class:`ArchitectureInfo`, which can also name the architecture's capacities ``m1`` ... ``m4``
(the config fields a spec's ``model.capacity`` stands for).

This module holds the only table of capacities (:data:`BUILTIN_CAPACITIES`, upstream's m1 ... m4) and the only
map of alternative names (:data:`ALIASES`, upstream's names -> registry names); :func:`canonical_architecture`
applies it. ``amulet.utils.initialize_model`` and the assessment engine read both from here.

Example:
    >>> from amulet.models import architectures, create_model
    >>> sorted(set(architectures()) & {"linearnet", "resnet", "simplecnn", "vgg"})
    ['linearnet', 'resnet', 'simplecnn', 'vgg']
    >>> create_model("linearnet", num_classes=2, input_shape=(10,), hidden_layer_sizes=[8]).classifier
    Linear(in_features=8, out_features=2, bias=True)
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from torch import nn

from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models._cnn import SimpleCNN
from amulet.models._linear_net import LinearNet
from amulet.models._resnet import ResNet
from amulet.models._vgg import VGG

__all__ = [
    "ALIASES",
    "BUILTIN_CAPACITIES",
    "ENTRY_POINT_GROUP",
    "ArchitectureInfo",
    "architectures",
    "canonical_architecture",
    "create_model",
    "get_architecture",
    "register_architecture",
]

logger = logging.getLogger(__name__)

#: Entry-point group through which installed packages add architectures.
ENTRY_POINT_GROUP = "amulet.architectures"

#: Message for an architecture name that is not registered; tests import it.
UNKNOWN_ARCHITECTURE_MESSAGE = (
    "Unknown architecture {name!r}. Known architectures: {known}. Operators add architectures through the "
    "'amulet.architectures' entry-point group or amulet.models.register_architecture()."
)

#: Message for a configuration key the architecture's factory does not take.
UNKNOWN_FIELD_MESSAGE = (
    "The {field!r} config field is not accepted by architecture {name!r}; accepted fields: {accepted}."
)


@dataclass(frozen=True)
class ArchitectureInfo:
    """A registered architecture.

    Attributes:
        name: Registry key used in specs (lower case).
        factory: ``factory(*, num_classes, input_shape, **config) -> nn.Module``; raises ``ValueError`` naming
            the parameter on bad config.
        description: One line shown in catalogs.
        source: ``"builtin"``, ``"python"`` (registered at run time) or ``"entry point <value>"``.
        capacities: Capacity name (``"m1"`` ... ``"m4"``, smallest first) -> the config fields it stands for;
            a spec's ``model.capacity`` picks one, and its ``model.config`` overrides single fields. Empty when
            the architecture has no named capacities.
    """

    name: str
    factory: Callable[..., nn.Module]
    description: str = ""
    source: str = "python"
    capacities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def accepted_fields(self) -> list[str] | None:
        """Keyword arguments the factory accepts (``None`` when it takes ``**kwargs``)."""
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


#: Alternative names accepted wherever an architecture name is: upstream's names (``initialize_model`` calls
#: SimpleCNN ``"cnn"`` and distribution inference LinearNet ``"linear_net"``) -> registry names.
ALIASES: dict[str, str] = {"cnn": "simplecnn", "linear_net": "linearnet"}

#: Capacities m1 ... m4 of the built-in architectures (upstream Amulet 0.6.0's), as fields of their factories'
#: configs: VGG by name, lists where upstream has tuples, so that a capacity serialises as JSON.
BUILTIN_CAPACITIES: dict[str, dict[str, dict[str, Any]]] = {
    "linearnet": {
        "m1": {"hidden_layer_sizes": [128, 256, 128]},
        "m2": {"hidden_layer_sizes": [256, 512, 256]},
        "m3": {"hidden_layer_sizes": [512, 1024, 512]},
        "m4": {"hidden_layer_sizes": [512, 1024, 1024, 512]},
    },
    "simplecnn": {
        "m1": {"conv_channels_kernel": [[12, 5], [24, 5]], "fc_layers": [256]},
        "m2": {"conv_channels_kernel": [[20, 5], [50, 5]], "fc_layers": [512]},
        "m3": {"conv_channels_kernel": [[32, 5], [64, 5]], "fc_layers": [768]},
        "m4": {"conv_channels_kernel": [[32, 5], [64, 5], [128, 3]], "fc_layers": [1024, 512]},
    },
    "vgg": {f"m{i + 1}": {"layer_config": name} for i, name in enumerate(("VGG11", "VGG13", "VGG16", "VGG19"))},
    "resnet": {
        f"m{i + 1}": {"size": name} for i, name in enumerate(("resnet34", "resnet50", "resnet101", "resnet152"))
    },
}


def canonical_architecture(name: str) -> str:
    """The registry name of the architecture ``name`` (lower case, :data:`ALIASES` applied).

    Example:
        >>> canonical_architecture("CNN"), canonical_architecture("linearnet")
        ('simplecnn', 'linearnet')
    """
    key = name.strip().lower()
    return ALIASES.get(key, key)


_REGISTRY: dict[str, ArchitectureInfo] = {}
_ENTRY_POINT_ERRORS: dict[str, str] = {}
_LOCK = threading.RLock()
_ENTRY_POINTS_LOADED = False


def register_architecture(
    name: str,
    factory: Callable[..., nn.Module] | ArchitectureInfo,
    force: bool = False,
    *,
    description: str = "",
    capacities: Mapping[str, Mapping[str, Any]] | None = None,
) -> ArchitectureInfo:
    """Register ``factory`` under ``name`` (case-insensitive) and return its :class:`ArchitectureInfo`.

    Args:
        name: Registry key, e.g. ``"mynet"``; stored in lower case.
        factory: Callable ``factory(*, num_classes, input_shape, **config) -> nn.Module``, or an
            :class:`ArchitectureInfo`.
        force: Replace an existing registration of the same name. Default ``False``.
        description: One line for catalogs (ignored when ``factory`` is an :class:`ArchitectureInfo`).
        capacities: Capacity name -> config fields (see :attr:`ArchitectureInfo.capacities`; ignored when
            ``factory`` is an :class:`ArchitectureInfo`).

    Raises:
        InvalidParameterError: ``name`` is empty or not a string, ``factory`` is not callable, or ``name`` is
            already registered and ``force`` is ``False``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="name", owner="register_architecture", expected="a non-empty str", value=name)
        )
    key = name.strip().lower()
    if isinstance(factory, ArchitectureInfo):
        info = ArchitectureInfo(key, factory.factory, factory.description, factory.source, factory.capacities)
    else:
        info = ArchitectureInfo(key, factory, description, "python", dict(capacities or {}))
    if not callable(info.factory):
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="factory", owner="register_architecture", expected="a callable", value=factory)
        )
    with _LOCK:
        if key in _REGISTRY and not force:
            raise InvalidParameterError(
                f"Architecture {key!r} is already registered (from {_REGISTRY[key].source}); "
                "pass force=True to replace it."
            )
        _REGISTRY[key] = info
        _ENTRY_POINT_ERRORS.pop(key, None)
    return info


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    with _LOCK:
        if _ENTRY_POINTS_LOADED:
            return
        _ENTRY_POINTS_LOADED = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            key = ep.name.strip().lower()
            if key in _REGISTRY:
                logger.warning(
                    "entry point %s=%s ignored: architecture %r is already registered", ep.name, ep.value, key
                )
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # an operator's broken plugin must not break the other architectures
                _ENTRY_POINT_ERRORS[key] = f"entry point {ep.value!r} failed to load: {type(exc).__name__}: {exc}"
                logger.warning("architecture %r: %s", key, _ENTRY_POINT_ERRORS[key])
                continue
            if isinstance(loaded, ArchitectureInfo):
                _REGISTRY[key] = ArchitectureInfo(
                    key, loaded.factory, loaded.description, f"entry point {ep.value}", loaded.capacities
                )
            elif callable(loaded):
                doc = (inspect.getdoc(loaded) or "").split("\n", 1)[0]
                _REGISTRY[key] = ArchitectureInfo(key, loaded, doc, f"entry point {ep.value}")
            else:
                _ENTRY_POINT_ERRORS[key] = f"entry point {ep.value!r} is neither callable nor an ArchitectureInfo"


def architectures() -> list[str]:
    """Sorted names of every registered architecture (built-ins and entry points)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_architecture(name: str) -> ArchitectureInfo:
    """The :class:`ArchitectureInfo` registered as ``name`` (case-insensitive; ``"cnn"`` means ``"simplecnn"``).

    Raises:
        InvalidParameterError: no such architecture; the message lists the known ones (or, for an operator's
            entry point that failed to import, why).
    """
    _load_entry_points()
    if not isinstance(name, str):
        raise InvalidParameterError(UNKNOWN_ARCHITECTURE_MESSAGE.format(name=name, known=", ".join(architectures())))
    key = name.strip().lower()
    key = canonical_architecture(key) if key not in _REGISTRY else key
    with _LOCK:
        if key in _REGISTRY:
            return _REGISTRY[key]
        if key in _ENTRY_POINT_ERRORS:
            raise InvalidParameterError(f"Architecture {key!r} is not available: {_ENTRY_POINT_ERRORS[key]}.")
    raise InvalidParameterError(UNKNOWN_ARCHITECTURE_MESSAGE.format(name=name, known=", ".join(sorted(_REGISTRY))))


def create_model(name: str, /, **config: Any) -> nn.Module:
    """Build a fresh (randomly initialised) model of architecture ``name``.

    Args:
        name: A registered architecture (see :func:`architectures`).
        **config: Passed to the architecture's factory. The built-ins take ``num_classes`` and
            ``input_shape`` (``(C, H, W)`` for images, ``(n_features,)`` for tabular data) plus their own
            fields: linearnet ``hidden_layer_sizes, batch_norm`` (or ``num_features`` instead of
            ``input_shape``); simplecnn ``conv_channels_kernel, fc_layers, batch_norm``; vgg
            ``layer_config, batch_norm``; resnet ``size, pretrained, replace_first, batch_norm``.

    Raises:
        InvalidParameterError: unknown architecture (the message lists the known ones), a config field the
            factory does not accept, or a bad value (the message names the field).
    """
    info = get_architecture(name)
    accepted = info.accepted_fields()
    if accepted is not None:
        for key in config:
            if key not in accepted:
                raise InvalidParameterError(
                    UNKNOWN_FIELD_MESSAGE.format(field=key, name=info.name, accepted=", ".join(accepted))
                )
    model = info.factory(**config)
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The factory of architecture {info.name!r} returned {type(model).__name__}, not a torch.nn.Module."
        )
    return model


# ----------------------------------------------------------------------------------------------------------
# Built-in factories


def _shape(owner: str, input_shape: Any, *, length: int | None) -> tuple[int, ...]:
    ok = (
        isinstance(input_shape, Sequence)
        and not isinstance(input_shape, (str, bytes))
        and len(input_shape) > 0
        and (length is None or len(input_shape) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)
    )
    if not ok:
        expected = f"a sequence of {length} positive ints" if length else "a non-empty sequence of positive ints"
        if length == 3:
            expected += " (channels, height, width)"
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="input_shape", owner=owner, expected=expected, value=input_shape)
        )
    return tuple(int(v) for v in input_shape)


def _linearnet(
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] | None = None,
    num_features: int | None = None,
    hidden_layer_sizes: Sequence[int] | None = None,
    batch_norm: bool = True,
) -> nn.Module:
    """Fully connected network (LinearNet); input_shape is flattened."""
    if input_shape is not None:
        flat = math.prod(_shape("linearnet", input_shape, length=None))
        if num_features is not None and num_features != flat:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="num_features",
                    owner="linearnet",
                    expected=f"the product of input_shape ({flat})",
                    value=num_features,
                )
            )
        num_features = flat
    if num_features is None:
        raise InvalidParameterError(
            "Architecture 'linearnet' needs its input size: pass input_shape (e.g. [108]) or num_features."
        )
    return LinearNet(num_features, num_classes, hidden_layer_sizes, batch_norm)


def _simplecnn(
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (1, 28, 28),
    conv_channels_kernel: Sequence[Sequence[int]] | None = None,
    fc_layers: Sequence[int] | None = None,
    batch_norm: bool = False,
) -> nn.Module:
    """Small CNN (SimpleCNN): convolution + max-pool blocks, then fully connected layers."""
    channels, height, width = _shape("simplecnn", input_shape, length=3)
    return SimpleCNN(
        conv_channels_kernel,  # type: ignore[arg-type]
        fc_layers,
        num_classes,
        channels,
        input_size=(height, width),
        batch_norm=batch_norm,
    )


def _vgg(
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    layer_config: Sequence[int | str] | str | None = None,
    batch_norm: bool = True,
) -> nn.Module:
    """VGG for any channel count and input size (layer_config: VGG11/13/16/19 or a list)."""
    channels = _shape("vgg", input_shape, length=3)[0]
    return VGG(num_classes, layer_config, batch_norm, input_channels=channels)


def _resnet(
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    size: str = "resnet18",
    pretrained: bool = False,
    replace_first: bool = True,
    batch_norm: bool = True,
) -> nn.Module:
    """torchvision ResNet backbone (resnet18 ... resnet152) with a new classifier."""
    channels = _shape("resnet", input_shape, length=3)[0]
    return ResNet(size, pretrained, num_classes, replace_first, input_channels=channels, batch_norm=batch_norm)


for _name, _factory in (("linearnet", _linearnet), ("resnet", _resnet), ("simplecnn", _simplecnn), ("vgg", _vgg)):
    _REGISTRY[_name] = ArchitectureInfo(
        _name, _factory, (_factory.__doc__ or "").strip(), "builtin", BUILTIN_CAPACITIES[_name]
    )
