"""Model zoo (upstream Amulet names) and the architecture registry.

Models: :class:`AmuletModel` (base: ``forward`` and ``get_hidden``), :class:`LinearNet`, :class:`SimpleCNN`,
:class:`VGG`, :class:`ResNet`. Registry: :func:`register_architecture`, :func:`create_model`,
:func:`architectures`, :func:`get_architecture` (built-ins ``linearnet``, ``simplecnn``, ``vgg``, ``resnet``
plus the ``amulet.architectures`` entry-point group), each with its capacities m1 ... m4
(:data:`BUILTIN_CAPACITIES`); :data:`ALIASES` and :func:`canonical_architecture` map upstream's names.
torchvision is imported only when a ResNet is built.
"""

from __future__ import annotations

from amulet.models._base import BATCH_OF_ONE_MESSAGE, AmuletModel
from amulet.models._cnn import SimpleCNN
from amulet.models._linear_net import LinearNet
from amulet.models._registry import (
    ALIASES,
    BUILTIN_CAPACITIES,
    ENTRY_POINT_GROUP,
    ArchitectureInfo,
    architectures,
    canonical_architecture,
    create_model,
    get_architecture,
    register_architecture,
)
from amulet.models._resnet import RESNET_SIZES, ResNet
from amulet.models._vgg import VGG, VGG_CONFIGS

__all__ = [
    "ALIASES",
    "AmuletModel",
    "ArchitectureInfo",
    "BATCH_OF_ONE_MESSAGE",
    "BUILTIN_CAPACITIES",
    "ENTRY_POINT_GROUP",
    "LinearNet",
    "RESNET_SIZES",
    "ResNet",
    "SimpleCNN",
    "VGG",
    "VGG_CONFIGS",
    "architectures",
    "canonical_architecture",
    "create_model",
    "get_architecture",
    "register_architecture",
]
