"""Training, evaluation, data and model utilities (upstream ``amulet.utils`` names, plus our additions).

Every name is re-exported explicitly (typed for type checkers): code inside and outside the package imports
these public names, not the private modules they live in. Importing ``amulet.utils`` imports torch and
pydantic; ``import amulet`` alone imports neither (its sub-packages load lazily).
"""

from __future__ import annotations

from amulet.utils._data import DATASET_NAMES, load_data, stratified_split, subsample_dataset
from amulet.utils._evaluation import (
    get_accuracy,
    get_fidelity,
    get_intermediate_features,
    get_predictions_numpy,
    predict_logits,
)
from amulet.utils._files import create_dir, load_or_train
from amulet.utils._flat_adam import FlatAdam, flat_adam
from amulet.utils._hooks import has_hooks
from amulet.utils._input_gradient import (
    chain_input_gradient,
    chain_logits,
    chain_logits_and_input_gradient,
    input_gradient,
    loss_gradient,
)
from amulet.utils._models import CAPACITY_CONFIG, DEFAULT_CAPACITY_MAP, CapacityError, initialize_model
from amulet.utils._population import (
    BATCHABLE_MODULES,
    PopulationResult,
    StackedOptimizer,
    architecture_fingerprint,
    batchable_reason,
    population_logits,
    tensor_fingerprint,
    train_population,
)
from amulet.utils._roc import roc_curve_points
from amulet.utils._seeding import derive_seed, make_generator, numpy_rng, resolve_device, seeded_init
from amulet.utils._tensordata import TensorData
from amulet.utils._threads import (
    automatic_threads,
    available_cores,
    busy_cores,
    configure_threads,
    layer1_threads,
    single_thread,
    thread_count,
)
from amulet.utils._training import (
    BatchTransform,
    StackedBatchTransform,
    TrainConfig,
    has_batchnorm,
    loader_batches,
    make_optimizer,
    run_epoch,
    train_classifier,
    train_model,
    transform_generator,
)
from amulet.utils._training_step import TrainingStep
from amulet.utils._utility import (
    DEGENERATE_P_VALUE,
    DEGENERATE_TOP_CLASS_SHARE,
    UtilityCheck,
    check_utility,
    degenerate_reason,
)

__all__ = [
    "BATCHABLE_MODULES",
    "BatchTransform",
    "CAPACITY_CONFIG",
    "CapacityError",
    "DATASET_NAMES",
    "DEFAULT_CAPACITY_MAP",
    "DEGENERATE_P_VALUE",
    "DEGENERATE_TOP_CLASS_SHARE",
    "FlatAdam",
    "PopulationResult",
    "StackedBatchTransform",
    "StackedOptimizer",
    "TensorData",
    "TrainConfig",
    "TrainingStep",
    "UtilityCheck",
    "architecture_fingerprint",
    "automatic_threads",
    "available_cores",
    "batchable_reason",
    "busy_cores",
    "chain_input_gradient",
    "chain_logits",
    "chain_logits_and_input_gradient",
    "check_utility",
    "configure_threads",
    "create_dir",
    "degenerate_reason",
    "derive_seed",
    "flat_adam",
    "get_accuracy",
    "get_fidelity",
    "get_intermediate_features",
    "get_predictions_numpy",
    "has_batchnorm",
    "has_hooks",
    "initialize_model",
    "input_gradient",
    "layer1_threads",
    "load_data",
    "load_or_train",
    "loader_batches",
    "loss_gradient",
    "make_generator",
    "make_optimizer",
    "numpy_rng",
    "population_logits",
    "predict_logits",
    "resolve_device",
    "roc_curve_points",
    "run_epoch",
    "seeded_init",
    "single_thread",
    "stratified_split",
    "subsample_dataset",
    "tensor_fingerprint",
    "thread_count",
    "train_classifier",
    "train_model",
    "train_population",
    "transform_generator",
]
