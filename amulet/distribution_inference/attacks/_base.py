"""Base class of distribution inference attacks: data splits and model populations."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import Interval, IsCallable, validate_params
from amulet.distribution_inference.attacks._splits import (
    DistributionSplits,
    prepare_distribution_splits,
    sample_with_ratio,
)
from amulet.distribution_inference.attacks._threshold import adversary_threshold, calibrate_scores
from amulet.exceptions import InvalidParameterError, NotRunError
from amulet.progress import Progress, resolve_progress
from amulet.utils._population import train_population
from amulet.utils._seeding import derive_seed, numpy_rng
from amulet.utils._tensordata import TensorData
from amulet.utils._training import TrainConfig

if TYPE_CHECKING:
    from amulet.recipes import Recipe

__all__ = ["DistributionInferenceAttack"]

logger = logging.getLogger(__name__)


class DistributionInferenceAttack(ABC):
    """Distinguish models trained on data with property ratio ``ratio1`` from models trained with ``ratio2``.

    The data are split into a victim half and an adversary half (:func:`prepare_distribution_splits`).
    Populations of ``num_models`` models per ratio are trained on the adversary's half and of
    ``num_victim_models`` per ratio on the victim's half; each model draws its own ``train_subsample`` rows
    (with the exact ratio) from its pool and has its own seed, and all populations are trained by
    :func:`amulet.utils.train_population` (one stacked ensemble for plain recipes), cached under
    ``models_dir``. Subclasses implement :meth:`attack`, which scores every victim model.

    Args:
        x_train, y_train, z_train, x_test, y_test, z_test: Data and sensitive attributes (numpy).
        sensitive_columns (list[str]): Names of the columns of ``z``.
        filter_column (str): The property's column (e.g. ``"sex"``).
        ratio1, ratio2 (float): Share of rows with the property in distribution 1 and 2, in [0, 1].
        model_arch, model_capacity (str): Architecture for :func:`amulet.utils.initialize_model`.
        num_features, num_classes (int): Model input and output sizes.
        num_models (int): Adversary models per ratio.
        epochs, batch_size (int): Training of every population model (the default recipe).
        device (str | torch.device): Torch device.
        models_dir (str | Path | None): Cache directory of population models (None: no cache).
        dataset (str): Dataset name (part of the cache directory name).
        exp_id (int): Experiment id.
        filter_value (int): Value of ``filter_column`` that has the property.
        drop_values (dict | None): Rows to drop, per column.
        train_subsample (int): Rows per model.
        test_subsample (int): Query rows per ratio.
        recipe (Recipe | None): Keyword-only. Training recipe of every population model.
        model_factory (Callable | None): Keyword-only. Architecture (overrides ``model_arch``).
        num_victim_models (int | None): Keyword-only. Victim models per ratio (default ``num_models``).
        seed (int): Keyword-only. Seed of the splits, draws and training. Default 0.
        progress (Progress | None): Keyword-only. Progress reporter.
    """

    _parameter_constraints = {
        "ratio1": [Interval(float, 0, 1)],
        "ratio2": [Interval(float, 0, 1)],
        "num_models": [Interval(int, 1, None)],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "train_subsample": [Interval(int, 2, None)],
        "test_subsample": [Interval(int, 2, None)],
        "num_victim_models": [Interval(int, 1, None), None],
        "model_factory": [IsCallable(), None],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        z_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        z_test: np.ndarray,
        sensitive_columns: list[str],
        filter_column: str,
        ratio1: float,
        ratio2: float,
        model_arch: str,
        model_capacity: str,
        num_features: int,
        num_classes: int,
        num_models: int,
        epochs: int,
        batch_size: int,
        device: str | torch.device,
        models_dir: str | Path | None,
        dataset: str,
        exp_id: int = 0,
        filter_value: int = 1,
        drop_values: dict[str, list[int]] | None = None,
        train_subsample: int = 1100,
        test_subsample: int = 500,
        *,
        recipe: Recipe | None = None,
        model_factory: Callable[[], nn.Module] | None = None,
        num_victim_models: int | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.x_train = x_train
        self.y_train = y_train
        self.z_train = z_train
        self.x_test = x_test
        self.y_test = y_test
        self.z_test = z_test
        self.sensitive_columns = sensitive_columns
        self.filter_column = filter_column
        self.ratio1 = ratio1
        self.ratio2 = ratio2
        self.model_arch = model_arch
        self.model_capacity = model_capacity
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_models = num_models
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.models_dir = models_dir
        self.dataset = dataset
        self.exp_id = exp_id
        self.filter_value = filter_value
        self.drop_values = drop_values
        self.train_subsample = train_subsample
        self.test_subsample = test_subsample
        self.recipe = recipe
        self.model_factory = model_factory
        self.num_victim_models = num_victim_models
        self.seed = seed
        self.progress = progress

    # ----------------------------------------------------------------------------------------------------
    def _factory(self, model_arch: str | None = None, model_capacity: str | None = None) -> Callable[[], nn.Module]:
        if self.model_factory is not None and model_arch is None and model_capacity is None:
            return self.model_factory
        from amulet.utils import initialize_model

        arch = model_arch or self.model_arch
        capacity = model_capacity or self.model_capacity
        features, classes = self.num_features, self.num_classes
        return lambda: initialize_model(arch, capacity, features, classes)

    def _recipe(self, epochs: int | None) -> Recipe:
        from amulet.recipes import Recipe

        if self.recipe is not None:
            if epochs is None or epochs == self.recipe.config.epochs:
                return self.recipe
            config = self.recipe.config.model_copy(update={"epochs": epochs})
            return Recipe(config, self.recipe.stages, name=self.recipe.name)
        return Recipe(TrainConfig(epochs=epochs or self.epochs, batch_size=self.batch_size))

    def train_model_population(
        self,
        loader: DataLoader,
        *,
        checkpoint_tag: str,
        model_arch: str | None = None,
        model_capacity: str | None = None,
        num_models: int | None = None,
        epochs: int | None = None,
    ) -> list[nn.Module]:
        """Train ``num_models`` models, each on its own ``train_subsample``-row draw from ``loader``'s pool.

        The draws keep the pool's property ratio exactly; seeds and draws derive from ``seed`` and
        ``checkpoint_tag``. Models are cached under ``models_dir`` (keyed by architecture, recipe, rows, seed).
        """
        validate_params(self)
        data = TensorData.from_dataset(loader.dataset)
        if data.z is None:
            raise InvalidParameterError(
                "The 'loader' parameter of train_model_population must yield (x, y, z) batches with the property "
                "column; build it with prepare_distribution_splits."
            )
        col = self.sensitive_columns.index(self.filter_column)
        mask = (data.z[:, col] == self.filter_value).numpy()
        ratio = float(mask.mean())
        count = num_models or self.num_models
        rng = numpy_rng(derive_seed(self.seed, "population", checkpoint_tag, "draws"))
        size = min(self.train_subsample, len(data))
        subsets = [sample_with_ratio(mask, ratio, size, rng) for _ in range(count)]
        seeds = [derive_seed(self.seed, "population", checkpoint_tag, k) for k in range(count)]
        cache = None if self.models_dir is None else Path(self.models_dir) / f"di_{self.dataset}_{self.exp_id}"
        result = train_population(
            self._factory(model_arch, model_capacity),
            data,
            subsets,
            recipe=self._recipe(epochs),
            seeds=seeds,
            device=self.device,
            cache_dir=cache,
            progress=self.progress,
        )
        return result.models

    def prepare_model_populations(self) -> DistributionSplits:
        """Build the splits and train the four populations (stored as ``models_adv_1`` ... ``models_vic_2``)."""
        validate_params(self)
        progress = resolve_progress(self.progress)
        self.splits = prepare_distribution_splits(
            np.asarray(self.x_train),
            np.asarray(self.y_train),
            np.asarray(self.z_train),
            np.asarray(self.x_test),
            np.asarray(self.y_test),
            np.asarray(self.z_test),
            list(self.sensitive_columns),
            self.filter_column,
            self.ratio1,
            self.ratio2,
            self.train_subsample,
            self.test_subsample,
            self.filter_value,
            self.drop_values,
            batch_size=self.batch_size,
            seed=derive_seed(self.seed, "splits") % (2**32),
        )
        victims = self.num_victim_models or self.num_models
        progress.start("distribution_inference/populations", 4, "training model populations")
        self.models_adv_1 = self.train_model_population(self.splits.adv_trainloader_1, checkpoint_tag="adv_1")
        progress.advance("distribution_inference/populations")
        self.models_adv_2 = self.train_model_population(self.splits.adv_trainloader_2, checkpoint_tag="adv_2")
        progress.advance("distribution_inference/populations")
        self.models_vic_1 = self.train_model_population(
            self.splits.vic_trainloader_1, checkpoint_tag="vic_1", num_models=victims
        )
        progress.advance("distribution_inference/populations")
        self.models_vic_2 = self.train_model_population(
            self.splits.vic_trainloader_2, checkpoint_tag="vic_2", num_models=victims
        )
        progress.advance("distribution_inference/populations")
        progress.finish("distribution_inference/populations")
        return self.splits

    def _populations(self, **given: Any) -> dict[str, Any]:
        names = {
            "models_adv_1": "models_adv_1",
            "models_adv_2": "models_adv_2",
            "models_target_1": "models_vic_1",
            "models_target_2": "models_vic_2",
        }
        out = {}
        for arg, attr in names.items():
            value = given.get(arg)
            if value is None:
                if not hasattr(self, attr):
                    raise NotRunError(
                        f"{type(self).__name__} has no populations yet; call prepare_model_populations() first "
                        "or pass every population to attack()."
                    )
                value = getattr(self, attr)
            if not value:
                raise InvalidParameterError(
                    f"The {arg!r} parameter of {type(self).__name__}.attack must be a non-empty list of models. "
                    "Got an empty list instead."
                )
            out[arg] = list(value)
        return out

    def _decide(
        self, scores: np.ndarray, truth: np.ndarray, adversary_scores: np.ndarray, adversary_labels: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The result of :meth:`attack`: victim scores calibrated so that the adversary's threshold is 0.5.

        The threshold is the one that best classifies the adversary's own models from their held-out scores
        (:func:`adversary_threshold`); the victims' scores and labels are not used to choose it.
        """
        threshold, adv_accuracy = adversary_threshold(adversary_scores, adversary_labels)
        if not np.isfinite(adv_accuracy):
            logger.warning(
                "%s: no held-out score of an adversary model (each population needs at least 2 models); the "
                "decision threshold stays at 0.5.",
                type(self).__name__,
            )
            threshold = 0.5
        self.threshold_ = threshold
        self.adversary_accuracy_ = adv_accuracy
        raw = np.asarray(scores, dtype=np.float64)
        return {
            "predictions": calibrate_scores(raw, threshold),
            "ground_truth": truth,
            "raw_scores": raw,
            "threshold": np.asarray(threshold),
            "adversary_accuracy": np.asarray(adv_accuracy),
            "adversary_scores": np.asarray(adversary_scores, dtype=np.float64),
            "adversary_labels": np.asarray(adversary_labels, dtype=np.float64),
        }

    @abstractmethod
    def attack(self, **kwargs: Any) -> dict[str, np.ndarray]:
        """Score every victim model: ``{"predictions": [0, 1] scores (>= 0.5: distribution 2), "ground_truth":
        0/1, ...}``; the 0.5 cut is the threshold chosen on the adversary's own models."""
