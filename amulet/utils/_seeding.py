"""Explicit randomness: generators and derived seeds, never global reseeding."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from amulet.settings import get_settings

__all__ = ["derive_seed", "make_generator", "numpy_rng", "resolve_device", "seeded_init"]


def derive_seed(seed: int, *labels: object) -> int:
    """Derive a stable 63-bit seed from ``seed`` and any labels (e.g. ``derive_seed(7, "shadow", 3)``).

    The same inputs always give the same seed, on any machine and Python version.
    """
    text = "/".join([str(int(seed)), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & ((1 << 63) - 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def numpy_rng(seed: int) -> np.random.Generator:
    """Return a NumPy generator seeded with ``seed``."""
    return np.random.default_rng(int(seed))


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """Turn ``None``/``"auto"``/a string into a ``torch.device`` (auto picks cuda when present)."""
    if device is None or device == "auto":
        return get_settings().resolve_device()
    return torch.device(device)


M = TypeVar("M")


def seeded_init(factory: Callable[[], M], seed: int) -> M:
    """Call ``factory`` with torch's RNG seeded by ``seed``, then restore the caller's RNG state.

    Weight initialisation inside ``nn.Module`` constructors draws from the global generator; forking it
    makes initialisation reproducible without reseeding anything the caller owns.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return factory()
