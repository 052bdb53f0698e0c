"""Training, evaluation, data and model utilities (upstream ``amulet.utils`` names, plus our additions).

Names are imported lazily so that ``import amulet.utils`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TensorData": "amulet.utils._tensordata",
    "TrainConfig": "amulet.utils._training",
    "train_classifier": "amulet.utils._training",
    "train_model": "amulet.utils._training",
    "make_optimizer": "amulet.utils._training",
    "get_accuracy": "amulet.utils._evaluation",
    "get_fidelity": "amulet.utils._evaluation",
    "get_predictions_numpy": "amulet.utils._evaluation",
    "get_intermediate_features": "amulet.utils._evaluation",
    "predict_logits": "amulet.utils._evaluation",
    "roc_curve_points": "amulet.utils._roc",
    "load_or_train": "amulet.utils._files",
    "create_dir": "amulet.utils._files",
    "make_generator": "amulet.utils._seeding",
    "derive_seed": "amulet.utils._seeding",
    "resolve_device": "amulet.utils._seeding",
    "numpy_rng": "amulet.utils._seeding",
    "seeded_init": "amulet.utils._seeding",
    "load_data": "amulet.utils._data",
    "stratified_split": "amulet.utils._data",
    "initialize_model": "amulet.utils._models",
    "DEFAULT_CAPACITY_MAP": "amulet.utils._models",
    "train_population": "amulet.utils._population",
    "population_logits": "amulet.utils._population",
    "PopulationResult": "amulet.utils._population",
    "StackedOptimizer": "amulet.utils._population",
    "architecture_fingerprint": "amulet.utils._population",
    "tensor_fingerprint": "amulet.utils._population",
    "batchable_reason": "amulet.utils._population",
    "configure_threads": "amulet.utils._threads",
    "check_utility": "amulet.utils._utility",
    "UtilityCheck": "amulet.utils._utility",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'amulet.utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
