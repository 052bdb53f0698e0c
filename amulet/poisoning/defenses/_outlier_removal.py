"""Outlier removal by KNN-Shapley data valuation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet._validation import InstanceOf, Interval, IsCallable, validate_params
from amulet.poisoning.defenses._base import PoisoningDefense
from amulet.poisoning.defenses._knn_shapley import knn_shapley
from amulet.progress import Progress, resolve_progress
from amulet.utils import (
    TensorData,
    TrainConfig,
    derive_seed,
    get_intermediate_features,
    layer1_threads,
    make_generator,
    seeded_init,
    train_classifier,
    train_model,
)

__all__ = ["OutlierRemoval", "lowest_value_split", "remove_low_value_points"]


def lowest_value_split(values: torch.Tensor | np.ndarray, percent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into the ``floor(n * percent / 100)`` lowest-valued and the rest.

    When every value is equal (up to float rounding, :data:`TIE_TOLERANCE` of their magnitude) the values rank
    nothing, and every index is kept. Other ties are broken by index, so the split is deterministic.

    Returns:
        (removed, kept): sorted index tensors.
    """
    v = torch.as_tensor(values).reshape(-1)
    n_remove = int(len(v) * float(percent) / 100)
    if len(v) and _all_tied(v):
        n_remove = 0
    order = torch.sort(v, stable=True).indices
    return order[:n_remove].sort().values, order[n_remove:].sort().values


#: Values whose spread is at most this fraction of their largest magnitude tie: KNN-Shapley values that are
#: equal in exact arithmetic (one class everywhere) differ by float rounding only, far below this.
TIE_TOLERANCE = 1e-9


def _all_tied(v: torch.Tensor) -> bool:
    v = v.double()
    spread = float(v.max() - v.min())
    return spread <= TIE_TOLERANCE * float(v.abs().max())


class OutlierRemoval(PoisoningDefense):
    """Train, value every training point with exact KNN-Shapley, drop the lowest-valued ``percent``, retrain.

    Values are computed on the penultimate features (``get_hidden``) of the model trained on all the data,
    with ``test_loader`` as the validation set. Poisoned and mislabelled points have low (often negative)
    values, so removing the LOWEST-valued points removes them; when all values tie, every point is kept. The
    model is then reset to its initial weights (and the optimizer to its initial state) and trained again on
    the kept points, handed to ``train_function`` as a shuffled loader over a ``TensorDataset`` of (x, y), as
    upstream Amulet.

    Reference:
        Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms. Jia et al., VLDB 2019.

    Args:
        model: Model to train; its weights at call time are the initial weights of both trainings.
        criterion: Training loss.
        optimizer: Optimizer over ``model``'s parameters.
        train_loader: Loader of the (possibly poisoned) training set.
        test_loader: Loader of clean validation data for the valuation.
        device: Torch device.
        train_function: ``train_function(model, loader, criterion, optimizer, epochs, device) -> model``
            (default :func:`amulet.utils.train_classifier`).
        percent: Percent of training points to remove, in [0, 100) (default 10).
        epochs: Epochs of each training (default 50).
        batch_size: Batch size of the feature-extraction passes (default 256).
        k: Neighbours of the KNN valuation (default 5).
        seed: Seed of the shuffling of the retraining loader (default 0).
        progress: Progress reporter (valuation chunks); silent when None.

    Attributes:
        shapley_values_: Value of every training point (dataset order).
        removed_indices_: Indices (into ``train_loader.dataset``) of the removed points.
        kept_indices_: Indices of the points kept for retraining.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "criterion": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "test_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "train_function": [IsCallable()],
        "percent": [Interval(float, 0, 100, closed="left")],
        "epochs": [Interval(int, 0, None)],
        "batch_size": [Interval(int, 1, None)],
        "k": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        test_loader: DataLoader,
        device: str | torch.device,
        train_function: Callable[..., nn.Module] = train_classifier,
        percent: float = 10,
        epochs: int = 50,
        batch_size: int = 256,
        *,
        k: int = 5,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.device = device
        self.train_function = train_function
        self.percent = percent
        self.epochs = epochs
        self.batch_size = batch_size
        self.k = k
        self.seed = seed
        self.progress = progress
        validate_params(self)

    def train_robust(self, get_hidden: Callable[..., Any] = get_intermediate_features) -> nn.Module:
        """Run the defense.

        Args:
            get_hidden: ``get_hidden(model, loader, device) -> (features, targets, inputs)``
                (default :func:`amulet.utils.get_intermediate_features`).

        Returns:
            The model retrained on the kept points, in eval mode.
        """
        validate_params(self)
        with layer1_threads(self.model):
            return self._train_robust(get_hidden)

    def _train_robust(self, get_hidden: Callable[..., Any]) -> nn.Module:
        device = torch.device(self.device)
        initial_model = copy.deepcopy(self.model.state_dict())
        initial_optimizer = copy.deepcopy(self.optimizer.state_dict())
        model = self.train_function(self.model, self.train_loader, self.criterion, self.optimizer, self.epochs, device)

        dataset = self.train_loader.dataset
        train_features, train_targets, _ = get_hidden(
            model, DataLoader(dataset, batch_size=self.batch_size, shuffle=False), device
        )
        test_features, test_targets, _ = get_hidden(
            model, DataLoader(self.test_loader.dataset, batch_size=self.batch_size, shuffle=False), device
        )
        values = knn_shapley(
            train_features,
            np.asarray(train_targets),
            test_features,
            np.asarray(test_targets),
            k=self.k,
            device=device,
            progress=self.progress,
        )
        removed, kept = lowest_value_split(values, self.percent)
        self.shapley_values_ = values
        self.removed_indices_ = removed
        self.kept_indices_ = kept

        model.load_state_dict(initial_model)
        self.optimizer.load_state_dict(initial_optimizer)
        rows = _tensor_rows(dataset).subset(kept)
        loader = DataLoader(
            TensorDataset(rows.x, rows.y),
            batch_size=self.train_loader.batch_size or self.batch_size,
            shuffle=True,
            generator=make_generator(self.seed),
        )
        model = self.train_function(model, loader, self.criterion, self.optimizer, self.epochs, device)
        return model.eval()


def _tensor_rows(dataset: Any) -> TensorData:
    """The (x, y) rows of ``dataset``: a ``TensorDataset``'s own tensors, any other dataset materialised."""
    if type(dataset) is TensorDataset and len(dataset.tensors) >= 2:
        return TensorData(dataset.tensors[0].float(), dataset.tensors[1].long().reshape(-1))
    return TensorData.from_dataset(dataset)


@torch.no_grad()
def _hidden(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    fn = getattr(model, "get_hidden", model)
    out = []
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size].to(device)
        out.append(fn(chunk).reshape(len(chunk), -1).float())
    return torch.cat(out)


def remove_low_value_points(
    model_factory: Callable[[], nn.Module],
    data: TensorData,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    percent: float = 10.0,
    k: int = 5,
) -> TensorData:
    """Outlier removal as a recipe data stage: the rows of ``data`` without its lowest-valued ``percent``.

    A model from ``model_factory`` is trained on all of ``data`` with ``config``; the rows are split in two
    seeded halves and each half is valued by KNN-Shapley on the model's ``get_hidden`` features with the
    other half as the validation set (no point values itself), then the lowest-valued ``percent`` of all
    rows is dropped.

    Returns:
        The kept rows, in their original order.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    n = len(data)
    if n < 2 or percent <= 0:
        return data
    model_seed = derive_seed(seed, "outlier_removal", "model")
    model = train_model(
        seeded_init(model_factory, model_seed), data, config=config, seed=model_seed, device=device, progress=progress
    )
    features = _hidden(model, data.x, device)
    y = data.y.to(device)
    perm = torch.randperm(n, generator=make_generator(derive_seed(seed, "outlier_removal", "split"))).to(device)
    a, b = perm[: n // 2], perm[n // 2 :]
    values = torch.zeros(n, dtype=torch.float64)
    values[a.cpu()] = knn_shapley(features[a], y[a], features[b], y[b], k=k, device=device, progress=progress)
    values[b.cpu()] = knn_shapley(features[b], y[b], features[a], y[a], k=k, device=device, progress=progress)
    _, kept = lowest_value_split(values, percent)
    return data.subset(kept)
