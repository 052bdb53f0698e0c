"""LiRA: the likelihood-ratio membership inference attack (Carlini et al., IEEE S&P 2022)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import norm
from torch import nn
from torch.utils.data import Dataset

from amulet._validation import InstanceOf, Interval, IsCallable, validate_params
from amulet.exceptions import InvalidParameterError, NotRunError
from amulet.membership_inference.attacks._base import MembershipInferenceAttack
from amulet.progress import Progress, resolve_progress
from amulet.recipes import Recipe
from amulet.utils import (
    TensorData,
    TrainConfig,
    derive_seed,
    initialize_model,
    numpy_rng,
    population_logits,
    train_population,
)

__all__ = ["LiRA", "lira_scores", "logit_scaled_confidence", "make_keep_matrix"]

logger = logging.getLogger(__name__)


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's per-example statistic ``log p_y - log sum_{y' != y} p_y'`` from logits (float64, stable).

    The softmax normaliser cancels, so this is ``logit_y - logsumexp_{y' != y} logit_y'``.

    Args:
        logits: ``(..., n, n_classes)``.
        labels: ``(n,)`` true labels.

    Returns:
        ``(..., n)``.
    """
    z = logits.double()
    index = labels.view(*([1] * (z.dim() - 2)), -1, 1).expand(*z.shape[:-1], 1)
    correct = z.gather(-1, index).squeeze(-1)
    others = z.scatter(-1, index, float("-inf"))
    return correct - torch.logsumexp(others, dim=-1)


def make_keep_matrix(n_shadow: int, n_records: int, pkeep: float, seed: int) -> np.ndarray:
    """Boolean ``(n_shadow, n_records)``: record j is IN shadow i. Each record is IN for exactly
    ``round(pkeep * n_shadow)`` shadows, chosen at random (Carlini et al.'s construction)."""
    rng = numpy_rng(seed)
    order = rng.uniform(size=(n_shadow, n_records)).argsort(0)
    return order < round(pkeep * n_shadow)


def lira_scores(
    target_scores: np.ndarray, shadow_scores: np.ndarray, keep: np.ndarray, *, fix_variance: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Online and offline LiRA scores (higher = more likely a member).

    Args:
        target_scores: ``(n,)`` logit-scaled confidences of the target.
        shadow_scores: ``(n_shadow, n)`` the same statistic for every shadow.
        keep: ``(n_shadow, n)`` boolean, True where the record was in that shadow's training set.
        fix_variance: Use one global IN and one global OUT variance (recommended with few shadows) instead
            of per-record variances.

    Returns:
        ``(online, offline)``: online = log N(t; mu_in, s_in) - log N(t; mu_out, s_out); offline =
        -log P[Z > t] for Z ~ N(mu_out, s_out) (the one-sided test; larger when t is far above the OUT
        distribution).
    """
    keep = keep.astype(bool)
    out = ~keep
    n_in = keep.sum(0)
    n_out = out.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(n_in > 0, (shadow_scores * keep).sum(0) / np.maximum(n_in, 1), np.nan)
        mean_out = np.where(n_out > 0, (shadow_scores * out).sum(0) / np.maximum(n_out, 1), np.nan)
    # Records with no IN (or OUT) shadow borrow the global mean.
    mean_in = np.where(np.isnan(mean_in), shadow_scores[keep].mean() if keep.any() else 0.0, mean_in)
    mean_out = np.where(np.isnan(mean_out), shadow_scores[out].mean() if out.any() else 0.0, mean_out)
    if fix_variance:
        std_in = np.full_like(mean_in, shadow_scores[keep].std() if keep.any() else 1.0)
        std_out = np.full_like(mean_out, shadow_scores[out].std() if out.any() else 1.0)
    else:
        std_in = np.sqrt(((shadow_scores - mean_in) ** 2 * keep).sum(0) / np.maximum(n_in, 1))
        std_out = np.sqrt(((shadow_scores - mean_out) ** 2 * out).sum(0) / np.maximum(n_out, 1))
    eps = 1e-30
    std_in, std_out = std_in + eps, std_out + eps
    online = norm.logpdf(target_scores, mean_in, std_in) - norm.logpdf(target_scores, mean_out, std_out)
    offline = -norm.logsf(target_scores, mean_out, std_out)
    return online, offline


class LiRA(MembershipInferenceAttack):
    """Likelihood-ratio attack with shadow models trained by the target's training recipe.

    ``num_shadow`` shadow models are trained on random halves (``pkeep``) of ``train_set``, each record IN
    for exactly ``round(pkeep * num_shadow)`` of them; for every record, Gaussians are fitted to the
    shadows' logit-scaled confidences when the record was IN and when it was OUT, and the target's
    confidence is scored by the likelihood ratio (online) or by a one-sided test against the OUT
    Gaussian (offline). Shadows are trained together by :func:`amulet.utils.train_population` and cached
    under ``models_dir`` keyed by architecture, recipe (epochs, optimizer, defenses), their own rows, seed
    and trainer, so a changed setting never reuses a stale shadow.

    As upstream, :meth:`prepare_shadow_models` trains the shadows and :meth:`attack` scores with them,
    training them first when they are not prepared (or were prepared with other settings).

    Reference:
        Membership Inference Attacks From First Principles. Carlini et al., IEEE S&P 2022.
        https://arxiv.org/abs/2112.03570

    Args:
        target_model (nn.Module): The model under attack (queried for logits only).
        in_data (array of int): Indices of ``train_set`` the target was trained on.
        shadow_architecture (str): Architecture name for :func:`amulet.utils.initialize_model`
            (ignored when ``model_factory`` is given).
        shadow_capacity (str): Capacity (``"m1"``..``"m4"``) for ``initialize_model``.
        train_set (Dataset | TensorData): The candidate records (members and non-members).
        dataset (str): Dataset name (part of the cache directory name).
        num_features (int): Input features of the shadow architecture.
        num_classes (int): Classes.
        batch_size (int): Shadow training batch size.
        pkeep (float): Fraction of shadows each record is IN for, in (0, 1).
        criterion (nn.Module): Kept for upstream compatibility; shadows train with cross-entropy (the recipe's loss).
        num_shadow (int): Number of shadow models, >= 2.
        epochs (int): Shadow training epochs.
        device (str | torch.device): Torch device.
        models_dir (str | Path | None): Directory for cached shadow models (None: no cache).
        experiment_id (int): Experiment id (part of the cache directory name), upstream's name; also readable
            and writable as the attribute ``exp_id`` (the name upstream's base class stores it under). Default 0.
        recipe (Recipe | None): Keyword-only. Training recipe of the shadows; default plain Adam training
            with ``epochs``, ``batch_size`` and ``lr``. Pass the target's recipe so that a defended target
            gets defended shadows.
        model_factory (Callable | None): Keyword-only. Builds the shadow architecture (overrides
            ``shadow_architecture``/``shadow_capacity``).
        lr (float): Keyword-only. Learning rate of the default recipe. Default 1e-3.
        fix_variance (bool): Keyword-only. Global variances (default True; recommended below 64 shadows).
        seed (int): Keyword-only. Seed of the IN/OUT assignment and of the shadows' training. Default 0.
        progress (Progress | None): Keyword-only. Progress reporter.

    Attributes:
        keep_ (np.ndarray): ``(num_shadow, n)`` IN/OUT assignment of records to shadows.
        shadow_models_ (list[nn.Module]): The trained shadows.
        target_scores_ (np.ndarray), shadow_scores_ (np.ndarray): The logit-scaled confidences.
        trainer_mode_ (str): ``"batched"``, ``"sequential"`` or ``"cached"``.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for an argument outside its allowed values
            (the message names it and them).
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "in_data": [InstanceOf((np.ndarray, torch.Tensor, list, tuple), label="an array or list of indices")],
        "shadow_architecture": [InstanceOf(str)],
        "shadow_capacity": [InstanceOf(str)],
        "train_set": [InstanceOf((Dataset, TensorData))],
        "dataset": [InstanceOf(str)],
        "num_features": [Interval(int, 1, None)],
        "num_classes": [Interval(int, 2, None)],
        "batch_size": [Interval(int, 1, None)],
        "pkeep": [Interval(float, 0, 1, closed="neither")],
        "criterion": [InstanceOf(nn.Module)],
        "num_shadow": [Interval(int, 2, None)],
        "epochs": [Interval(int, 1, None)],
        "device": [InstanceOf((str, torch.device))],
        "models_dir": [InstanceOf((str, Path)), None],
        "experiment_id": [Interval(int, 0, None)],
        "recipe": [InstanceOf(Recipe), None],
        "model_factory": [IsCallable(), None],
        "lr": [Interval(float, 0, None, closed="neither")],
        "fix_variance": [InstanceOf(bool)],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        target_model: nn.Module,
        in_data: np.ndarray | Sequence[int] | torch.Tensor,
        shadow_architecture: str,
        shadow_capacity: str,
        train_set: Dataset | TensorData,
        dataset: str,
        num_features: int,
        num_classes: int,
        batch_size: int,
        pkeep: float,
        criterion: nn.Module,
        num_shadow: int,
        epochs: int,
        device: str | torch.device,
        models_dir: str | Path | None,
        experiment_id: int = 0,
        *,
        recipe: Recipe | None = None,
        model_factory: Callable[[], nn.Module] | None = None,
        lr: float = 1e-3,
        fix_variance: bool = True,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.target_model = target_model
        self.in_data = in_data
        self.shadow_architecture = shadow_architecture
        self.shadow_capacity = shadow_capacity
        self.train_set = train_set
        self.dataset = dataset
        self.num_features = num_features
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.pkeep = pkeep
        self.criterion = criterion
        self.num_shadow = num_shadow
        self.epochs = epochs
        self.device = device
        self.models_dir = models_dir
        self.experiment_id = experiment_id
        self.recipe = recipe
        self.model_factory = model_factory
        self.lr = lr
        self.fix_variance = fix_variance
        self.seed = seed
        self.progress = progress
        validate_params(self)

    @property
    def exp_id(self) -> int:
        """Alias of :attr:`experiment_id` (upstream's base class stores it under this name).

        Only an attribute: the constructor takes ``experiment_id`` alone, as upstream's LiRA does, so that every
        constructor argument is stored unchanged under its own name.
        """
        return self.experiment_id

    @exp_id.setter
    def exp_id(self, value: int) -> None:
        self.experiment_id = value

    def _factory(self, data: TensorData) -> Callable[[], nn.Module]:
        if self.model_factory is not None:
            return self.model_factory
        arch, capacity, features, classes = (
            self.shadow_architecture,
            self.shadow_capacity,
            self.num_features,
            self.num_classes,
        )
        shape = tuple(data.x.shape[1:])
        if len(shape) >= 2 and arch not in ("linearnet", "linear_net"):
            # image shadows take the channels of the images they train on (upstream's are fixed per architecture)
            return lambda: initialize_model(arch, capacity, features, classes, input_shape=shape)
        return lambda: initialize_model(arch, capacity, features, classes)

    def _recipe(self) -> Recipe:
        if self.recipe is not None:
            return self.recipe
        return Recipe(TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr))

    def _data(self) -> TensorData:
        return self.train_set if isinstance(self.train_set, TensorData) else TensorData.from_dataset(self.train_set)

    def _shadow_settings(self) -> tuple[Any, ...]:
        """What the prepared shadows depend on: attack() retrains them when any of it changed since."""
        return (
            id(self.train_set),
            self.shadow_architecture,
            self.shadow_capacity,
            self.num_features,
            self.num_classes,
            self.batch_size,
            self.pkeep,
            self.num_shadow,
            self.epochs,
            str(self.device),
            None if self.models_dir is None else str(self.models_dir),
            self.dataset,
            self.experiment_id,
            id(self.recipe),
            id(self.model_factory),
            self.lr,
            self.seed,
        )

    def prepare_shadow_models(self) -> list[nn.Module]:
        """Train (or load from ``models_dir``) the ``num_shadow`` shadow models, as upstream.

        :meth:`attack` then reuses them; it calls this method itself when they are not prepared yet or any
        setting they depend on changed since.

        Returns:
            The shadow models (also :attr:`shadow_models_`; their IN/OUT rows are :attr:`keep_`).

        Raises:
            InvalidParameterError: a parameter out of range, naming it.
        """
        validate_params(self)
        if round(self.pkeep * self.num_shadow) < 1 or round(self.pkeep * self.num_shadow) >= self.num_shadow:
            raise InvalidParameterError(
                f"The 'pkeep' parameter of LiRA must leave every record IN for at least one and OUT for at least one "
                f"of the {self.num_shadow} shadows (1 <= round(pkeep * num_shadow) < num_shadow). Got {self.pkeep!r} "
                "instead."
            )
        progress = resolve_progress(self.progress)
        data = self._data()
        keep = make_keep_matrix(self.num_shadow, len(data), self.pkeep, derive_seed(self.seed, "lira", "keep"))
        seeds = [derive_seed(self.seed, "lira", "shadow", i) for i in range(self.num_shadow)]
        cache_dir = None
        if self.models_dir is not None:
            cache_dir = Path(self.models_dir) / f"lira_{self.dataset}_{self.experiment_id}"
        progress.start("lira_shadows", 1, "LiRA: shadow models")
        population = train_population(
            self._factory(data),
            data,
            [np.flatnonzero(row) for row in keep],
            recipe=self._recipe(),
            seeds=seeds,
            device=torch.device(self.device),
            cache_dir=cache_dir,
            progress=progress,
        )
        progress.advance("lira_shadows")
        progress.finish("lira_shadows")
        self.keep_ = keep
        self.shadow_models_ = population.models
        self.trainer_mode_ = population.mode
        self.n_cached_ = population.n_cached
        self._prepared_for = self._shadow_settings()
        return population.models

    def attack(self) -> dict[str, np.ndarray]:
        """Score every record of ``train_set`` with the shadows (trained first unless prepared).

        Returns:
            ``{"lira_online_preds", "lira_offline_preds", "true_labels"}``: two float arrays of scores
            (higher = more likely a member) and a boolean array (True = in ``in_data``), one entry per
            record of ``train_set``.
        """
        validate_params(self)
        data = self._data()
        n = len(data)
        in_idx = np.asarray(torch.as_tensor(np.asarray(self.in_data)).long().reshape(-1))
        if len(in_idx) and (in_idx.min() < 0 or in_idx.max() >= n):
            raise InvalidParameterError(
                f"The 'in_data' parameter of LiRA must hold indices of train_set (0..{n - 1}). "
                f"Got values from {in_idx.min()} to {in_idx.max()} instead."
            )
        if getattr(self, "_prepared_for", None) != self._shadow_settings():
            self.prepare_shadow_models()
        true_labels = np.zeros(n, dtype=bool)
        true_labels[in_idx] = True
        progress = resolve_progress(self.progress)
        progress.start("lira", 1, "LiRA: scoring")
        device = torch.device(self.device)
        shadow_logits = population_logits(self.shadow_models_, data.x, device=device)
        target_logits = population_logits([self.target_model], data.x, device=device)[0]
        shadow_scores = logit_scaled_confidence(shadow_logits, data.y).numpy()
        target_scores = logit_scaled_confidence(target_logits, data.y).numpy()
        online, offline = lira_scores(target_scores, shadow_scores, self.keep_, fix_variance=self.fix_variance)
        progress.advance("lira")
        progress.finish("lira")
        self.shadow_scores_ = shadow_scores
        self.target_scores_ = target_scores
        return {"lira_online_preds": online, "lira_offline_preds": offline, "true_labels": true_labels}

    def get_shadow_models(self) -> list[nn.Module]:
        """The shadows trained by :meth:`prepare_shadow_models` (or by :meth:`attack`)."""
        if not hasattr(self, "shadow_models_"):
            raise NotRunError("This LiRA instance has no shadow models yet; call prepare_shadow_models() or attack().")
        return self.shadow_models_

    def __repr__(self) -> str:
        args: dict[str, Any] = {"num_shadow": self.num_shadow, "pkeep": self.pkeep, "epochs": self.epochs}
        return f"LiRA({', '.join(f'{k}={v!r}' for k, v in args.items())})"
