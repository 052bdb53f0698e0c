"""Base class of distribution inference attacks: data splits and model populations (upstream Amulet 0.6 API)."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from amulet._validation import InstanceOf, Interval, IsCallable, validate_params
from amulet.distribution_inference.attacks._arguments import check_attack_arguments
from amulet.distribution_inference.attacks._populations import PopulationJob, fit_populations, warn_if_sizes_differ
from amulet.distribution_inference.attacks._splits import DistributionSplits, _plan, _splits_from_plan
from amulet.distribution_inference.attacks._threshold import decide
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError, NotRunError
from amulet.progress import Progress, resolve_progress
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, derive_seed, initialize_model

__all__ = ["DistributionInferenceAttack"]


#: The data arguments, and what each may be (check_attack_arguments converts them with ``np.asarray``).
_ARRAY_ARGUMENTS = ("x_train", "y_train", "z_train", "x_test", "y_test", "z_test")
_ARRAY_TYPES = (np.ndarray, torch.Tensor, list, tuple)
_ARRAY_LABEL = "an array (numpy, torch or a list)"


class DistributionInferenceAttack(ABC):
    """Distinguish models trained on data with property ratio ``ratio1`` from models trained with ``ratio2``.

    The lifecycle is upstream Amulet 0.6's: construct with the data and training parameters, call
    :meth:`prepare_model_populations` (splits and four populations: adversary and target models at each ratio),
    then :meth:`attack`, which scores every target model. The data are halved into a target and an adversary
    half (:func:`prepare_distribution_splits`); each population model trains on its own class-balanced draw
    from its half at its ratio (model 0 on the draw in ``splits``), with its own seed.

    Checkpoints are written into ``models_dir`` under upstream's names,
    ``{dataset}_dist_inf_{adv|target}_{1|2}_{model_arch}_{model_capacity}_{model_id}_{exp_id}.pth`` (a torch state
    dict, read back with ``weights_only=True``), so a second run, or another attack on the same populations
    (``WhiteBoxPIM`` after ``SuriEvans2022``), loads them instead of training. Next to each, a ``.json`` file
    records a fingerprint of what trained it (architecture, recipe, training rows, seed); a checkpoint whose
    fingerprint differs is retrained rather than silently reused, and one without it (written by upstream
    Amulet) is loaded as upstream would.

    Args:
        x_train, y_train, z_train, x_test, y_test, z_test: Data, binary labels and sensitive attributes (numpy).
        sensitive_columns (list[str]): Names of the columns of ``z_train`` / ``z_test``.
        filter_column (str): The property's column (e.g. ``"sex"``); one of ``sensitive_columns``.
        ratio1, ratio2 (float): Share of rows with the property in distribution 1 and 2, in [0, 1].
        model_arch, model_capacity (str): Architecture for :func:`amulet.utils.initialize_model`
            (e.g. ``"linearnet"``, ``"m1"``); image architectures take their input shape from ``x_train``.
        num_features, num_classes (int): Model input and output sizes.
        num_models (int): Models per population.
        epochs, batch_size (int): Training of every population model (Adam, lr 1e-3, cross-entropy, as upstream).
        device (str | torch.device): Torch device.
        models_dir (str | Path | None): Directory of the population checkpoints (None: nothing is written).
        dataset (str): Dataset name (part of the checkpoint names).
        exp_id (int): Experiment id: part of the checkpoint names and, unless ``seed`` is given, the seed of the
            splits, the draws and the training. Default 0.
        filter_value (int): Value of ``filter_column`` that has the property. Default 1.
        drop_values (dict | None): Rows to drop first, per column (e.g. ``{"race": [2]}``).
        train_subsample (int): Label-1 rows per training draw (label-0 rows: three times as many). Default 1100.
        test_subsample (int): Label-1 rows per test draw and half. Default 500.
        recipe (Recipe | None): Keyword-only. Training recipe of every population model (overrides ``epochs`` and
            ``batch_size``'s plain training, e.g. to train defended populations).
        model_factory (Callable | None): Keyword-only. Architecture (overrides ``model_arch``).
        num_target_models (int | None): Keyword-only. Target models per ratio (default ``num_models``).
        seed (int | None): Keyword-only. Seed of the splits, draws and training (default ``exp_id``).
        progress (Progress | None): Keyword-only. Progress reporter.

    Attributes:
        population_rows_ (dict[str, int]): Mean training rows per model of ``"adv_1"``, ``"adv_2"``, ``"target_1"``
            and ``"target_2"`` (a warning when one ratio's are well below the other's: :func:`warn_if_sizes_differ`).

    Raises:
        ValueError: (:class:`~amulet.exceptions.InvalidParameterError`) at construction, for any argument out of
            range, naming the parameter and its allowed values.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **{name: [InstanceOf(_ARRAY_TYPES, label=_ARRAY_LABEL)] for name in _ARRAY_ARGUMENTS},
        # the columns' names and the property's column are checked against each other and against z's width
        # by _check_splits_args (check_attack_arguments), which the constraints cannot express
        "sensitive_columns": [InstanceOf((list, tuple))],
        "filter_column": [InstanceOf(str)],
        "ratio1": [Interval(float, 0, 1)],
        "ratio2": [Interval(float, 0, 1)],
        # names of initialize_model's architectures, checked when no model_factory replaces them (the set of
        # architectures grows at run time, so it is read when the attack is built, not fixed here)
        "model_arch": [InstanceOf(str)],
        "model_capacity": [InstanceOf(str)],
        "num_features": [Interval(int, 1, None)],
        "num_classes": [Interval(int, 2, None)],
        "num_models": [Interval(int, 1, None)],
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "device": [InstanceOf((str, torch.device))],
        "models_dir": [InstanceOf((str, Path)), None],
        "dataset": [InstanceOf(str)],
        "exp_id": [Interval(int, 0, None)],
        "filter_value": [Interval(int, None, None)],
        "drop_values": [InstanceOf(dict), None],
        "train_subsample": [Interval(int, 1, None)],
        "test_subsample": [Interval(int, 1, None)],
        "recipe": [InstanceOf(Recipe), None],
        "model_factory": [IsCallable(), None],
        "num_target_models": [Interval(int, 1, None), None],
        "seed": [Interval(int, 0, None), None],
        "progress": [InstanceOf(Progress), None],
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
        models_dir: Path | str | None,
        dataset: str,
        exp_id: int = 0,
        filter_value: int = 1,
        drop_values: dict[str, list[int]] | None = None,
        train_subsample: int = 1100,
        test_subsample: int = 500,
        *,
        recipe: Recipe | None = None,
        model_factory: Callable[[], nn.Module] | None = None,
        num_target_models: int | None = None,
        seed: int | None = None,
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
        self.num_target_models = num_target_models
        self.seed = seed
        self.progress = progress

        self.splits: DistributionSplits | None = None
        self.models_adv_1: list[nn.Module] = []
        self.models_adv_2: list[nn.Module] = []
        self.models_target_1: list[nn.Module] = []
        self.models_target_2: list[nn.Module] = []
        self._check_arguments()

    # --- validation ------------------------------------------------------------------------------------

    def _check_arguments(self) -> None:
        """Construction-time checks: every bad argument raises before any work, naming the parameter."""
        check_attack_arguments(self)

    # --- deprecated names (before upstream renamed victim -> target) -----------------------------------

    @property
    def models_vic_1(self) -> list[nn.Module]:
        """Deprecated: use ``models_target_1``."""
        warnings.warn("models_vic_1 is deprecated; use models_target_1.", DeprecationWarning, stacklevel=2)
        return self.models_target_1

    @property
    def models_vic_2(self) -> list[nn.Module]:
        """Deprecated: use ``models_target_2``."""
        warnings.warn("models_vic_2 is deprecated; use models_target_2.", DeprecationWarning, stacklevel=2)
        return self.models_target_2

    # --- populations -----------------------------------------------------------------------------------

    @property
    def _seed(self) -> int:
        return int(self.exp_id if self.seed is None else self.seed)

    def _factory(self, model_arch: str | None = None, model_capacity: str | None = None) -> Callable[[], nn.Module]:
        if self.model_factory is not None and model_arch is None and model_capacity is None:
            return self.model_factory
        arch = model_arch or self.model_arch
        capacity = model_capacity or self.model_capacity
        features, classes = self.num_features, self.num_classes
        shape = tuple(np.shape(self.x_train)[1:])
        if len(shape) >= 2 and arch not in ("linearnet", "linear_net"):
            # image architectures take their channels from the data, as upstream's initialize_model does
            return lambda: initialize_model(arch, capacity, features, classes, input_shape=shape)
        return lambda: initialize_model(arch, capacity, features, classes)

    def _recipe(self, epochs: int | None) -> Recipe:
        if self.recipe is not None:
            if epochs is None or epochs == self.recipe.config.epochs:
                return self.recipe
            config = self.recipe.config.model_copy(update={"epochs": epochs})
            return Recipe(config, self.recipe.stages, name=self.recipe.name)
        return Recipe(TrainConfig(epochs=epochs or self.epochs, batch_size=self.batch_size))

    def _fit_population(
        self,
        data: TensorData,
        subsets: Sequence[np.ndarray | torch.Tensor],
        tag: str,
        *,
        model_arch: str | None = None,
        model_capacity: str | None = None,
        epochs: int | None = None,
        cache_dir: Path | None = None,
    ) -> list[nn.Module]:
        """Model ``k`` trained on ``data.subset(subsets[k])`` with seed ``derive_seed(seed, "population", tag, k)``.

        One population of :meth:`_fit_populations` (which trains several in one stacked run).
        """
        return self._fit_populations(
            {tag: (data, subsets)}, model_arch=model_arch, model_capacity=model_capacity, epochs=epochs,
            cache_dir=cache_dir,
        )[tag]  # fmt: skip

    def _fit_populations(
        self,
        populations: dict[str, tuple[TensorData, Sequence[np.ndarray | torch.Tensor]]],
        *,
        model_arch: str | None = None,
        model_capacity: str | None = None,
        epochs: int | None = None,
        cache_dir: Path | None = None,
    ) -> dict[str, list[nn.Module]]:
        """Train (or load) several populations at once: ``{tag: (data, subsets)}`` -> ``{tag: models}``.

        Model ``k`` of population ``tag`` trains on ``data.subset(subsets[k])`` with seed
        ``derive_seed(seed, "population", tag, k)``; all models of all populations train in one stacked
        :func:`~amulet.utils.train_population` run (:func:`fit_populations`). With ``models_dir``, model ``k`` is
        loaded from / saved to ``{models_dir}/{tag}_{k}_{exp_id}.pth`` (see the class docstring); otherwise
        ``cache_dir`` is :func:`train_population`'s content-keyed cache.
        """
        jobs = [PopulationJob(data, subsets, tag) for tag, (data, subsets) in populations.items()]
        models = fit_populations(
            jobs, self._factory(model_arch, model_capacity), self._recipe(epochs), self._seed,
            device=torch.device(self.device), models_dir=None if self.models_dir is None else Path(self.models_dir),
            exp_id=self.exp_id, cache_dir=cache_dir,
            progress=self.progress,
        )  # fmt: skip
        return {job.tag: population for job, population in zip(jobs, models)}

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
        """Train (or load) ``num_models`` models, each on every row of ``loader``, as upstream does.

        The models differ by seed (``derive_seed(seed, "population", checkpoint_tag, k)``). With ``models_dir``,
        model ``k`` is stored as ``{models_dir}/{checkpoint_tag}_{k}_{exp_id}.pth`` and loaded from there on the
        next call (upstream's convention for the tag: ``"{dataset}_dist_inf_{role}_{dist}_{arch}_{capacity}"``).

        Args:
            loader: Training data; its dataset yields ``(x, y)`` (upstream's loaders) or ``(x, y, z)``.
            checkpoint_tag: Names this population's checkpoints within ``models_dir``.
            model_arch, model_capacity: Architecture overrides (default the instance's).
            num_models: Model count override (default ``num_models``).
            epochs: Epoch count override (default ``epochs``).

        Returns:
            The models, in eval mode, with gradients disabled.
        """
        validate_params(self)
        if not isinstance(checkpoint_tag, str) or not checkpoint_tag:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="checkpoint_tag", owner="train_model_population", expected="a non-empty string",
                    value=checkpoint_tag,
                )
            )  # fmt: skip
        count = self.num_models if num_models is None else num_models
        for name, value in (("num_models", count), ("epochs", epochs if epochs is not None else self.epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(
                    PARAM_MESSAGE.format(
                        name=name, owner="train_model_population", expected="an int in the range [1, inf)",
                        value=value,
                    )
                )  # fmt: skip
        data = _tensor_data(loader.dataset)
        everything = np.arange(len(data))
        return self._fit_population(
            data, [everything] * count, checkpoint_tag, model_arch=model_arch, model_capacity=model_capacity,
            epochs=epochs,
        )  # fmt: skip

    def _tag(self, role: str, dist: str) -> str:
        return f"{self.dataset}_dist_inf_{role}_{dist}_{self.model_arch}_{self.model_capacity}"

    def prepare_model_populations(self) -> None:
        """Build the splits (``self.splits``) and train or load the four populations.

        The populations are ``models_adv_1``, ``models_adv_2`` (``num_models`` each) and ``models_target_1``,
        ``models_target_2`` (``num_target_models`` each, default ``num_models``). Model ``k`` of a population
        trains on its own draw from its half at its ratio; model 0's draw is the one in ``splits``
        (e.g. ``splits.target_trainloader_1``). Must be called before :meth:`attack`.
        """
        validate_params(self)
        progress = resolve_progress(self.progress)
        seed = self._seed
        plan = _plan(
            self.x_train, self.y_train, self.z_train, self.x_test, self.y_test, self.z_test,
            list(self.sensitive_columns), self.filter_column, self.ratio1, self.ratio2, self.train_subsample,
            self.test_subsample, self.filter_value, self.drop_values, 3.0, 100, seed, owner=type(self).__name__,
        )  # fmt: skip
        self.splits = _splits_from_plan(plan, self.batch_size, np.random.default_rng(seed))
        targets = self.num_target_models or self.num_models
        loaders = {
            ("target", "1"): self.splits.target_trainloader_1,
            ("target", "2"): self.splits.target_trainloader_2,
            ("adv", "1"): self.splits.adv_trainloader_1,
            ("adv", "2"): self.splits.adv_trainloader_2,
        }
        progress.start("distribution_inference/populations", 1, "training model populations")
        self.population_rows_: dict[str, int] = {}
        jobs: dict[str, tuple[TensorData, Sequence[np.ndarray | torch.Tensor]]] = {}
        for (role, dist), loader in loaders.items():
            half = plan.train[0] if role == "target" else plan.train[1]
            ratio = plan.ratios[int(dist) - 1]
            count = targets if role == "target" else self.num_models
            first = _tensor_data(loader.dataset)
            xs, ys, subsets, offset = [first.x], [first.y], [np.arange(len(first))], len(first)
            for k in range(1, count):
                rng = np.random.default_rng(derive_seed(seed, "draw", role, dist, k))
                rows = plan.draw(half, ratio, plan.train_subsample, rng)
                xs.append(torch.as_tensor(np.asarray(half.x[rows], dtype=np.float32)))
                ys.append(torch.as_tensor(np.asarray(half.y[rows], dtype=np.int64)).reshape(-1))
                subsets.append(np.arange(offset, offset + len(rows)))
                offset += len(rows)
            jobs[self._tag(role, dist)] = (TensorData(torch.cat(xs), torch.cat(ys)), subsets)
            self.population_rows_[f"{role}_{dist}"] = round(offset / count)
        warn_if_sizes_differ(type(self).__name__, self.population_rows_, self.train_subsample)
        trained = self._fit_populations(jobs)
        populations = {(role, dist): trained[self._tag(role, dist)] for role, dist in loaders}
        progress.advance("distribution_inference/populations")
        progress.finish("distribution_inference/populations")
        self.models_adv_1, self.models_adv_2 = populations["adv", "1"], populations["adv", "2"]
        self.models_target_1, self.models_target_2 = populations["target", "1"], populations["target", "2"]

    # --- attack helpers --------------------------------------------------------------------------------

    def _populations(self, **given: Any) -> dict[str, list[nn.Module]]:
        out = {}
        for arg, value in given.items():
            if value is None:
                value = getattr(self, arg)
                if not value:
                    raise NotRunError(
                        f"{type(self).__name__} has no populations yet: call prepare_model_populations() before "
                        "attack(), or pass every population to attack()."
                    )
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
        """The result of :meth:`attack` (:func:`decide`): target scores calibrated so that the threshold chosen on
        the adversary's own models is 0.5; sets ``threshold_``, ``adversary_accuracy_`` and ``one_sided_``."""
        result = decide(type(self).__name__, scores, truth, adversary_scores, adversary_labels)
        self.threshold_ = float(result["threshold"])
        self.adversary_accuracy_ = float(result["adversary_accuracy"])
        self.one_sided_ = bool(result["one_sided"])
        return result

    @abstractmethod
    def attack(self) -> dict[str, np.ndarray]:
        """Score every target model: ``{"predictions": [0, 1] scores (>= 0.5: distribution 2), "ground_truth":
        0/1, ...}``; the 0.5 cut is the threshold chosen on the adversary's own models."""


def _tensor_data(dataset: Dataset) -> TensorData:
    """A dataset's rows as tensors; a ``TensorDataset`` (the splits' loaders) without iterating it row by row."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) in (2, 3):
        x, y = dataset.tensors[0], dataset.tensors[1]
        z = dataset.tensors[2].long() if len(dataset.tensors) == 3 else None
        return TensorData(x.float(), y.long().reshape(-1), None if z is None else z.reshape(len(z), -1))
    return TensorData.from_dataset(dataset)
