"""Population checkpoints under upstream Amulet 0.6's file names, with a fingerprint of what trained each.

A checkpoint is upstream's file, ``{models_dir}/{tag}_{model_id}_{exp_id}.pth`` (a torch state dict, read back
with ``weights_only=True``); next to it a ``.json`` file records a fingerprint of the architecture, recipe,
training rows and seed. A checkpoint whose fingerprint differs is retrained rather than silently reused, and
one without a fingerprint (written by upstream Amulet or by hand) is loaded as upstream would.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from amulet.utils import tensor_fingerprint

__all__ = ["checkpoint_path", "checkpoint_stamp", "frozen", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)


def checkpoint_path(directory: Path, tag: str, model_id: int, exp_id: int) -> Path:
    """Upstream's checkpoint name of model ``model_id`` of population ``tag``."""
    return directory / f"{tag}_{model_id}_{exp_id}.pth"


def checkpoint_stamp(arch_key: str, recipe_key: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> str:
    """The fingerprint of one population model: architecture, recipe, its own training rows and its seed."""
    payload = json.dumps([arch_key, recipe_key, tensor_fingerprint(x, y), seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode, gradients off (upstream returns population models this way)."""
    model.eval()
    model.requires_grad_(False)
    return model


def save_checkpoint(path: Path, stamp: str, model: nn.Module) -> None:
    """Upstream's file (a torch state dict, written atomically) plus our fingerprint next to it."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"fingerprint": stamp}))


def load_checkpoint(
    path: Path, stamp: str, architecture: Callable[[], nn.Module], device: torch.device
) -> nn.Module | None:
    """The model stored at ``path``, or None when there is none, it is unreadable, or it was trained otherwise."""
    if not path.exists():
        return None
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            recorded = json.loads(sidecar.read_text()).get("fingerprint")
        except (OSError, ValueError):
            recorded = None
        if recorded != stamp:
            logger.warning("retraining %s: it was trained on other rows, settings or seed than this run's", path)
            return None
    else:
        logger.info("loading %s (no fingerprint: written by upstream Amulet or by hand)", path)
    model = architecture()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a foreign or corrupt file is retrained over, not a crash
        logger.warning("retraining %s: it does not load into this architecture (%s)", path, exc)
        return None
    return model.to(device).eval()
