"""The population trainer's model cache: safetensors state dicts keyed by everything that determines them.

Each model is stored under ``cache_dir/model-<key>.safetensors``, where the key hashes the architecture
(:func:`~amulet.utils.architecture_fingerprint`), the recipe key (optimizer, epochs, batch size, defense
stages and their parameters), a SHA-256 of the model's own training rows, its seed and the trainer mode.
Changing any of them trains a new model. The file's metadata records normalisation layers a recipe replaced
(DP-SGD: BatchNorm -> GroupNorm) so that the structure can be rebuilt, and the privacy figures a DP-SGD
model carries.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["load_model", "model_key", "save_model"]

logger = logging.getLogger(__name__)

_FLOAT_ATTRIBUTES = ("privacy_epsilon_", "privacy_delta_")


def model_key(arch: str, recipe_key: str, data_hash: str, seed: int, mode: str) -> str:
    """The cache key (32 hex characters) of one trained model."""
    text = json.dumps(
        {"architecture": arch, "recipe": recipe_key, "data": data_hash, "seed": int(seed), "trainer": mode},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _replacements(reference: nn.Module, model: nn.Module) -> list[dict[str, object]]:
    """Normalisation modules that training replaced (DP-SGD: BatchNorm -> GroupNorm), as rebuild recipes."""
    old = dict(reference.named_modules())
    out: list[dict[str, object]] = []
    for name, module in model.named_modules():
        if name in old and type(old[name]) is not type(module) and isinstance(module, nn.GroupNorm):
            out.append(
                {"name": name, "groups": module.num_groups, "channels": module.num_channels, "affine": module.affine}
            )
    return out


def _apply_replacements(model: nn.Module, replacements: list[dict[str, object]]) -> nn.Module:
    for r in replacements:
        name = str(r["name"])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.GroupNorm(int(r["groups"]), int(r["channels"]), affine=bool(r["affine"])))  # type: ignore[call-overload]
    return model


def save_model(path: Path, model: nn.Module, reference: nn.Module) -> None:
    """Write ``model``'s state dict to ``path`` (atomically), with what rebuilding its structure needs.

    Args:
        path: The ``.safetensors`` file.
        model: The trained model.
        reference: A fresh model of the architecture it was trained from (to record replaced layers).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture_repr": repr(model), "replacements": json.dumps(_replacements(reference, model))}
    for attr in _FLOAT_ATTRIBUTES:
        if getattr(model, attr, None) is not None:
            meta[attr] = repr(float(getattr(model, attr)))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def load_model(path: Path, model_factory: Callable[[], nn.Module], device: torch.device) -> nn.Module | None:
    """The model stored at ``path`` (eval mode, on ``device``), or None when it is unreadable or foreign."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # a corrupt or foreign file is a cache miss
        logger.warning("ignoring unreadable cached model %s (%s)", path, exc)
        return None
    # A recipe may change the architecture (DP-SGD replaces BatchNorm by GroupNorm); rebuild it.
    model = _apply_replacements(model_factory(), json.loads(meta.get("replacements", "[]")))
    if meta.get("architecture_repr") not in (None, repr(model)):
        return None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        return None
    for attr in _FLOAT_ATTRIBUTES:
        if attr in meta:
            setattr(model, attr, float(meta[attr]))
    return model.to(device).eval()
