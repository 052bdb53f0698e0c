"""Content fingerprints (SHA-256) of tensors and architectures: the parts of a trained model's cache key."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn

__all__ = ["architecture_fingerprint", "tensor_fingerprint"]


def tensor_fingerprint(*tensors: torch.Tensor | np.ndarray | None) -> str:
    """SHA-256 (hex) of the dtypes, shapes and bytes of ``tensors`` (None allowed)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none|")
            continue
        arr = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        h.update(f"{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def architecture_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's class, module structure (``repr``) and state-dict names, shapes and dtypes.

    Two models with the same fingerprint accept each other's state dicts and compute the same function of
    them; any change of layer sizes, normalisation or activation changes it.
    """
    cls = type(model)
    parts = [
        f"{cls.__module__}.{cls.__qualname__}",
        repr(model),
        json.dumps([(k, list(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
