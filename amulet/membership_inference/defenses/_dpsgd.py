"""DP-SGD (Abadi et al., CCS 2016), upstream's ``DPSGD`` class and the training-recipe loop stage.

The training itself is :func:`dp_train` (:mod:`._dp_train`), with the accounting in :mod:`._dp_accounting`,
the model preparation in :mod:`._dp_models` and the clipped per-sample gradients in :mod:`._dp_gradients`;
their names stay importable from here.

What is done differently from upstream Amulet 0.6.0:

* training samples **Poisson batches** as Opacus' ``DPDataLoader`` does (the same draws), not the original
  loader's batches, so the reported epsilon describes the training that happened;
* layers Opacus cannot train privately (BatchNorm) are replaced with ``ModuleValidator.fix`` (BatchNorm ->
  GroupNorm) and listed in :attr:`DPSGD.replaced_modules_`;
* the returned model is a plain ``nn.Module`` with no Opacus hooks or ``grad_sample`` attributes: its
  state dict reloads into the architecture (``ModuleValidator.fix(architecture)`` when modules were
  replaced), and attacks that need input gradients (PGD, model inversion, dataset inference) run on it;
* the spent epsilon is exposed as :attr:`DPSGD.epsilon_` and, on the returned model, as the attribute
  ``privacy_epsilon_`` (with ``privacy_delta_`` and ``privacy_noise_multiplier_``); the interaction engine
  reads it from the model. :attr:`DPSGD.privacy_engine` is, as upstream, the Opacus ``PrivacyEngine`` the
  training ran through, so ``privacy_engine.accountant.get_epsilon(delta)`` is the same number;
* Opacus' procedure (Poisson sampling, per-sample clipping, Gaussian noise, accountant) runs without Opacus'
  wrappers: **ghost clipping** gives the clipped sum when every trainable parameter is in an ``nn.Linear``
  layer (per-sample norms from each layer's inputs and output gradients, no per-sample gradient
  materialised), ``torch.func`` per-sample gradients (the engine's path) otherwise; the noise comes from
  the same seeded generator and the accountant of :attr:`DPSGD.privacy_engine` records every step, so the
  model equals Opacus' own training (``dp_train(per_sample="hooks")``) to float rounding and the epsilon is
  the same number, at a fraction of the cost per step;
* training runs with the ``num_threads`` setting (``AMULET_NUM_THREADS``) when it is set, and with one
  thread for a small model when it is automatic (:func:`amulet.utils._threads.layer1_threads`; the caller's
  thread count is restored afterwards);
* an optional ``target_epsilon`` picks the noise multiplier through Opacus' accountant utilities
  (``get_noise_multiplier``) for the sampling rate and number of steps the training will take;
* the recipe stage trains with its own epochs, batch size, learning rate and optimizer (DP-SGD needs more
  noisy steps and a larger step size than the non-private training a spec configures), see
  :func:`dp_stage_config`;
* an uploaded graph (:class:`amulet.io.GraphModel`, a ``.pt2``/``.onnx`` file) calls its layers as operators,
  so Opacus' module hooks never see them: its per-sample gradients come from ``torch.func``
  (:func:`amulet.io.per_sample_gradients`), and Poisson sampling, clipping, noise and the accountant are as
  for any other model. A graph is
  never converted: one with BatchNorm is refused (:class:`~amulet.exceptions.NotApplicableError`, with the
  reason and the layers to use instead, see :func:`amulet.io.dp_sgd_refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, check_param, validate_params
from amulet.exceptions import InvalidParameterError, NotRunError
from amulet.membership_inference.defenses._base import MembershipInferenceDefense
from amulet.membership_inference.defenses._dp_accounting import (
    DELTA_ATTRIBUTE as DELTA_ATTRIBUTE,
)
from amulet.membership_inference.defenses._dp_accounting import (
    EPSILON_ATTRIBUTE as EPSILON_ATTRIBUTE,
)
from amulet.membership_inference.defenses._dp_accounting import (
    MAX_NOISE_MULTIPLIER as MAX_NOISE_MULTIPLIER,
)
from amulet.membership_inference.defenses._dp_accounting import (
    NOISE_ATTRIBUTE as NOISE_ATTRIBUTE,
)
from amulet.membership_inference.defenses._dp_accounting import noise_for_epsilon, poisson_schedule, spent_epsilon
from amulet.membership_inference.defenses._dp_models import (
    is_uploaded_graph,
    make_dp_compatible,
    refuse_unless_dp_trainable,
)
from amulet.membership_inference.defenses._dp_train import DPTrainingResult, dp_train
from amulet.progress import Progress
from amulet.utils import BatchTransform, TrainConfig, layer1_threads, make_optimizer

__all__ = [
    "DPSGD",
    "DPTrainingResult",
    "dp_sgd_loop",
    "dp_stage_config",
    "dp_train",
    "is_uploaded_graph",
    "make_dp_compatible",
    "noise_for_epsilon",
    "poisson_schedule",
    "refuse_unless_dp_trainable",
    "spent_epsilon",
]

#: Fields of :class:`~amulet.utils.TrainConfig` the DP-SGD stage sets for itself (see :func:`dp_stage_config`).
STAGE_TRAINING_FIELDS = ("epochs", "batch_size", "lr", "optimizer")


def dp_stage_config(config: TrainConfig, overrides: Mapping[str, Any] | None) -> TrainConfig:
    """The training config of a DP-SGD stage: ``config`` with the stage's own training parameters applied.

    A spec's training config is tuned for non-private training; DP-SGD adds per-step noise of std
    ``sigma * C / B`` and needs more steps and a larger step size to leave the majority-class plateau (on
    census, 5 epochs of Adam at lr 0.005 end at the majority rate, 10 epochs at lr 0.01 reach ~83 %).

    Args:
        config: The recipe's config (weight decay and momentum are always taken from it).
        overrides: ``epochs``, ``batch_size``, ``lr``, ``optimizer``; a missing or None entry keeps ``config``'s.

    Raises:
        InvalidParameterError: an unknown field, or a value :class:`~amulet.utils.TrainConfig` rejects.
    """
    updates = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(updates) - set(STAGE_TRAINING_FIELDS))
    if unknown:
        raise InvalidParameterError(
            f"DP-SGD training parameters {unknown} are not supported; use {list(STAGE_TRAINING_FIELDS)}."
        )
    if not updates:
        return config
    try:
        return TrainConfig.model_validate({**config.model_dump(), **updates})
    except ValidationError as err:
        raise InvalidParameterError(f"Invalid DP-SGD training parameters {updates}: {err}") from err


class DPSGD(MembershipInferenceDefense):
    """Differentially private training with DP-SGD (per-sample clipping + Gaussian noise) via Opacus.

    Reference:
        Deep Learning with Differential Privacy. Abadi et al., CCS 2016. https://arxiv.org/abs/1607.00133

    Args:
        model (nn.Module): Model to train.
        criterion (nn.Module): Loss with mean reduction (e.g. ``nn.CrossEntropyLoss()``).
        optimizer (torch.optim.Optimizer): Optimizer over ``model``'s parameters.
        train_loader (DataLoader): Training data; its batch size is the expected (Poisson) batch size.
        device (str | torch.device): Torch device.
        delta (float): Target delta, in (0, 1).
        max_per_sample_grad_norm (float): Per-sample clipping norm C, > 0.
        sigma (float): Noise multiplier, >= 0 (ignored when ``target_epsilon`` is given).
        secure_rng (bool): Cryptographically secure sampling and noise (needs ``torchcsprng``). Default False.
        epochs (int): Training epochs, >= 1. Default 5.
        max_physical_batch_size (int | None): Largest physical batch (memory), or None. Default None.
        accountant (str): Keyword-only. ``"prv"`` (default: Opacus' default, which upstream's
            ``PrivacyEngine(secure_mode=secure_rng)`` uses), ``"rdp"`` (the assessment engine's default) or
            ``"gdp"``.
        seed (int): Keyword-only. Seed of Poisson sampling and noise (ignored with ``secure_rng``). Default 0.
        target_epsilon (float | None): Keyword-only. If given, the noise multiplier is the smallest whose
            epsilon after this training is at most ``target_epsilon`` (Opacus' ``get_noise_multiplier`` for
            the loader's sampling rate and ``epochs``); ``sigma`` is then ignored. Default None.
        progress (Progress | None): Keyword-only. Progress reporter.

    Attributes:
        privacy_engine (opacus.PrivacyEngine): As upstream: the engine the training runs through (created on
            first use, so it exists before training). After :meth:`train_private`,
            ``privacy_engine.accountant.get_epsilon(delta)`` equals :attr:`epsilon_`; training again on the
            same instance continues its history, so the epsilon composes both runs.
        epsilon_ (float): Spent epsilon at ``delta`` (also ``privacy_epsilon_`` on the returned model).
        noise_multiplier_ (float): The noise multiplier trained with (``sigma``, or the one ``target_epsilon``
            picked; also ``privacy_noise_multiplier_`` on the returned model).
        sample_rate_ (float): Poisson sampling rate.
        steps_ (int): Optimizer steps taken.
        replaced_modules_ (list[str]): Modules replaced by ``ModuleValidator.fix`` (e.g. BatchNorm -> GroupNorm).
        batch_sizes_ (list[int]): Sizes of the Poisson batches drawn.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for an argument outside its allowed values
            (the message names it and them).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from amulet.utils import TensorData
        >>> data = TensorData(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        >>> model = nn.Linear(4, 2)
        >>> dp = DPSGD(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), data.loader(16),
        ...            "cpu", delta=1e-5, max_per_sample_grad_norm=1.0, sigma=1.0, epochs=1)
        >>> private = dp.train_private()
        >>> round(private.privacy_epsilon_, 6) == round(dp.epsilon_, 6) and dp.epsilon_ > 0
        True
        >>> float(dp.privacy_engine.accountant.get_epsilon(1e-5)) == dp.epsilon_
        True
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "criterion": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "delta": [Interval(float, 0, 1, closed="neither")],
        "max_per_sample_grad_norm": [Interval(float, 0, None, closed="neither")],
        "sigma": [Interval(float, 0, None, closed="left")],
        "secure_rng": [InstanceOf(bool)],
        "epochs": [Interval(int, 1, None)],
        "max_physical_batch_size": [Interval(int, 1, None), None],
        "accountant": [Options({"rdp", "prv", "gdp"})],
        "seed": [Interval(int, 0, None)],
        "target_epsilon": [Interval(float, 0, None, closed="neither"), None],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        device: str | torch.device,
        delta: float,
        max_per_sample_grad_norm: float,
        sigma: float,
        secure_rng: bool = False,
        epochs: int = 5,
        max_physical_batch_size: int | None = None,
        *,
        accountant: str = "prv",
        seed: int = 0,
        target_epsilon: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.delta = delta
        self.max_per_sample_grad_norm = max_per_sample_grad_norm
        self.sigma = sigma
        self.secure_rng = secure_rng
        self.epochs = epochs
        self.max_physical_batch_size = max_physical_batch_size
        self.accountant = accountant
        self.seed = seed
        self.target_epsilon = target_epsilon
        self.progress = progress
        self._privacy_engine: Any = None
        validate_params(self)

    @property
    def privacy_engine(self) -> Any:
        """The Opacus ``PrivacyEngine`` that training runs through (this instance's accountant and secure_rng)."""
        engine = self._privacy_engine
        if engine is None or engine.accountant.mechanism() != self.accountant or engine.secure_mode != self.secure_rng:
            # Opacus is imported when DP-SGD is used, not with amulet (its import costs about as much as amulet's).
            from opacus import PrivacyEngine

            check_param(type(self).__name__, "accountant", self.accountant, [Options({"rdp", "prv", "gdp"})])
            check_param(type(self).__name__, "secure_rng", self.secure_rng, [InstanceOf(bool)])
            engine = self._privacy_engine = PrivacyEngine(accountant=self.accountant, secure_mode=self.secure_rng)
        return engine

    def train_private(self) -> nn.Module:
        """Train with DP-SGD and return the plain, hook-free model (carrying ``privacy_epsilon_``)."""
        validate_params(self)
        with layer1_threads(self.model):
            result = self._train()
        self.epsilon_ = result.epsilon
        self.noise_multiplier_ = result.noise_multiplier
        self.sample_rate_ = result.sample_rate
        self.steps_ = result.steps
        self.replaced_modules_ = result.replaced_modules
        self.batch_sizes_ = result.batch_sizes
        return result.model

    def _train(self) -> DPTrainingResult:
        return dp_train(
            self.model,
            self.optimizer,
            self.train_loader,
            self.criterion,
            noise_multiplier=self.sigma,
            max_grad_norm=self.max_per_sample_grad_norm,
            delta=self.delta,
            epochs=self.epochs,
            device=self.device,
            secure_rng=self.secure_rng,
            accountant=self.accountant,
            max_physical_batch_size=self.max_physical_batch_size,
            seed=self.seed,
            target_epsilon=self.target_epsilon,
            progress=self.progress,
            privacy_engine=self.privacy_engine,
        )

    def get_epsilon(self) -> float:
        """The epsilon spent by :meth:`train_private` (at ``delta``)."""
        if not hasattr(self, "epsilon_"):
            raise NotRunError("This DPSGD instance has not trained yet; call train_private() first.")
        return self.epsilon_


def dp_sgd_loop(
    *,
    noise_multiplier: float | None,
    max_grad_norm: float,
    delta: float,
    accountant: str = "rdp",
    max_physical_batch_size: int | None = None,
    target_epsilon: float | None = None,
    training: Mapping[str, Any] | None = None,
) -> Any:
    """The training loop of the ``dp_sgd`` recipe stage (:class:`amulet.recipes.LoopStage`).

    The loop trains with the recipe's config updated by the stage's own ``training`` parameters
    (:func:`dp_stage_config`: epochs, batch size as the expected Poisson batch size, learning rate,
    optimizer) and applies the recipe's batch transforms (so DP-SGD + adversarial training trains privately
    on PGD examples). The returned model carries ``privacy_epsilon_``, ``privacy_delta_`` and
    ``privacy_noise_multiplier_``.

    Args:
        noise_multiplier: Noise multiplier sigma (ignored when ``target_epsilon`` is given).
        max_grad_norm: Per-sample clipping norm C.
        delta: Target delta.
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        max_physical_batch_size: Largest physical batch, or None.
        target_epsilon: If given, picks the noise multiplier for each trained model's schedule.
        training: Overrides of the recipe's config for this stage (see :func:`dp_stage_config`).
    """
    own = dict(training or {})
    dp_stage_config(TrainConfig(), own)  # unknown or invalid fields fail when the stage is built

    def train(
        model: nn.Module,
        data: Any,
        *,
        config: Any,
        seed: int,
        device: torch.device | str,
        batch_transform: BatchTransform | None = None,
        progress: Progress | None = None,
    ) -> nn.Module:
        config = dp_stage_config(config, own)
        result = dp_train(
            model,
            make_optimizer(model, config),
            data.loader(min(config.batch_size, len(data))),
            nn.CrossEntropyLoss(),
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            delta=delta,
            epochs=config.epochs,
            target_epsilon=target_epsilon,
            device=device,
            accountant=accountant,
            max_physical_batch_size=max_physical_batch_size,
            batch_transform=batch_transform,
            seed=seed,
            progress=progress,
        )
        return result.model

    return train
