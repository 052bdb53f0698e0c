"""Files: directories and load-or-train caching of state dicts (never unpickling)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["create_dir", "load_or_train"]

logger = logging.getLogger(__name__)


def create_dir(path: str | Path, log: logging.Logger | None = None) -> Path:
    """Create ``path`` (and parents) if missing and return it as a ``Path``."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        (log or logger).info("created directory %s", path)
    return path


def load_or_train(
    path: str | Path,
    init_fn: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module], nn.Module],
    log: logging.Logger | None = None,
    description: str = "model",
) -> nn.Module:
    """Load the state dict at ``path`` into ``init_fn()``, or train with ``train_fn`` and save it there.

    The file holds only a state dict and is read with ``weights_only=True``: loading it never runs code.
    """
    log = log or logger
    path = Path(path)
    model = init_fn()
    if path.exists():
        log.info("loading %s from %s", description, path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    log.info("training %s (no checkpoint at %s)", description, path)
    model = train_fn(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)
    return model.eval()
