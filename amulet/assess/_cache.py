"""Content-addressed cache of trained models (safetensors weights + a JSON sidecar; never pickle).

A model's key is the SHA-256 of everything that determines its weights: the architecture spec, the
recipe (:attr:`amulet.recipes.Recipe.key`), the SHA-256 of the rows it trained on, and the seed. The same
key always names the same weights, so the baseline and every defended model are trained once and reused
by every risk, every re-run and every assessment that shares them.

Example:
    >>> from amulet.assess import ModelCache
    >>> key = ModelCache.make_key({"architecture": "linearnet"}, '{"stages":[]}', "ab" * 32, 0)
    >>> len(key)
    64
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ModelCache", "count_training", "file_sha256", "training_counts"]

_COUNTS = {"trained": 0, "imported": 0, "reused": 0}
_COUNT_LOCK = threading.Lock()


def training_counts() -> dict[str, int]:
    """How many models this process trained, imported (given weights) and reused from the cache."""
    with _COUNT_LOCK:
        return dict(_COUNTS)


def count_training(kind: str) -> None:
    """Count one model of ``kind`` (``"trained"``, ``"imported"`` or ``"reused"``) in :func:`training_counts`."""
    with _COUNT_LOCK:
        _COUNTS[kind] += 1


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelCache:
    """Trained models on disk under ``<root>/models/<key[:2]>/<key>.{safetensors,json}``.

    Args:
        root: Cache directory (created when first written).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def make_key(architecture: dict[str, Any], recipe_key: str, data_sha256: str, seed: int) -> str:
        """SHA-256 hex of (architecture spec, recipe key, data hash, seed)."""
        payload = json.dumps(
            {"architecture": architecture, "recipe": recipe_key, "data": data_sha256, "seed": int(seed)},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def paths(self, key: str) -> tuple[Path, Path]:
        """(weights file, sidecar file) of ``key``."""
        folder = self.root / "models" / key[:2]
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def has(self, key: str) -> bool:
        """True when both the weights and the sidecar of ``key`` exist."""
        weights, meta = self.paths(key)
        return weights.is_file() and meta.is_file()

    def meta(self, key: str) -> dict[str, Any]:
        """The sidecar of ``key``."""
        return json.loads(self.paths(key)[1].read_text(encoding="utf-8"))

    def load(self, key: str, factory: Callable[[], nn.Module], device: torch.device | str = "cpu") -> nn.Module:
        """A fresh model from ``factory`` with the cached weights of ``key`` (eval mode, on ``device``).

        Raises:
            ValueError: the weights file does not match its recorded SHA-256 (corrupted or altered).
        """
        from safetensors.torch import load_file

        weights, _ = self.paths(key)
        recorded = self.meta(key).get("weights_sha256")
        if recorded and file_sha256(weights) != recorded:
            raise ValueError(
                f"The cached weights {weights} do not match their recorded SHA-256; delete the file to retrain."
            )
        model = factory()
        model.load_state_dict(load_file(str(weights)))
        return model.to(device).eval()

    def update_meta(self, key: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Add ``extra`` to the sidecar of ``key`` (atomically; the weights are untouched); returns the sidecar."""
        _, sidecar = self.paths(key)
        meta = {**self.meta(key), **extra}
        tmp_meta = sidecar.with_name(sidecar.name + f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp_meta, sidecar)
        return meta

    def save(self, key: str, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """Write ``model``'s state dict (safetensors) and ``meta`` (+ the weights' SHA-256); returns the sidecar."""
        from safetensors.torch import save_file

        weights, sidecar = self.paths(key)
        weights.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
        suffix = f".tmp{os.getpid()}.{threading.get_ident()}"
        tmp_weights = weights.with_name(weights.name + suffix)
        save_file(state, str(tmp_weights), metadata={"key": key})
        meta = {**meta, "key": key, "weights_sha256": file_sha256(tmp_weights), "format": "safetensors"}
        tmp_meta = sidecar.with_name(sidecar.name + suffix)
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp_weights, weights)
        os.replace(tmp_meta, sidecar)
        return meta
