"""Amulet: measure how ML defenses interact with security, privacy and fairness risks.

Layer 1 (upstream Amulet 0.6.0 API): ``amulet.datasets``, ``amulet.models``, ``amulet.utils`` and one
package per risk (``amulet.evasion``, ``amulet.poisoning``, ``amulet.unauth_model_ownership``,
``amulet.membership_inference``, ``amulet.attribute_inference``, ``amulet.distribution_inference``,
``amulet.data_reconstruction``, ``amulet.discriminatory_behavior``).
Layer 2: ``amulet.assess`` (assessment specs, the defense x risk matrix, reports).
Shared: ``amulet.registry``, ``amulet.recipes``, ``amulet.progress``, ``amulet.settings``.

Sub-packages are imported lazily, so ``import amulet`` does not import torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__version__ = "0.1.0"

#: Sub-packages that are applications rather than library API (``amulet.cli`` imports typer and rich).
_APPLICATIONS = frozenset({"cli"})

#: Every public sub-package and module, found on disk: a new risk package is listed without editing this file
#: (its registry entries come from its ``_register`` module, see :mod:`amulet.registry`).
_SUBMODULES = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in _APPLICATIONS)
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"amulet.{name}")
    raise AttributeError(f"module 'amulet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
