"""DP-SGD (Abadi et al., CCS 2016) through Opacus, and its training-recipe loop stage.

What is done differently from upstream Amulet 0.6.0:

* training iterates the **Poisson-sampling loader** Opacus builds (``DPDataLoader``), not the original
  loader, so the reported epsilon describes the training that happened;
* layers Opacus cannot train privately (BatchNorm) are replaced with ``ModuleValidator.fix`` (BatchNorm ->
  GroupNorm) and listed in :attr:`DPSGD.replaced_modules_`;
* the returned model is a plain ``nn.Module`` with no Opacus hooks or ``grad_sample`` attributes: its
  state dict reloads into the architecture (``ModuleValidator.fix(architecture)`` when modules were
  replaced), and attacks that need input gradients (PGD, model inversion, dataset inference) run on it;
* the spent epsilon is exposed as :attr:`DPSGD.epsilon_` and, on the returned model, as the attribute
  ``privacy_epsilon_`` (with ``privacy_delta_`` and ``privacy_noise_multiplier_``); the interaction engine
  reads it from the model. :attr:`DPSGD.privacy_engine` is, as upstream, the Opacus ``PrivacyEngine`` the
  training ran through, so ``privacy_engine.accountant.get_epsilon(delta)`` is the same number;
* per-sample gradients come from ``torch.func`` (one ``vmap`` of ``grad`` over the batch) and are handed to
  Opacus' optimizer (``grad_sample_mode="no_op"``), instead of Opacus' module hooks: Poisson sampling,
  clipping, noise and the accountant stay Opacus' (the same model to float rounding as the hooks give,
  ``dp_train(per_sample="hooks")``), at less cost per step, with no hooks on the module during training;
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
  (:func:`amulet.io.per_sample_gradients`) and are handed to Opacus' optimizer (``grad_sample_mode="no_op"``),
  so Poisson sampling, clipping, noise and the accountant are Opacus' as for any other model. A graph is
  never converted: one with BatchNorm is refused (:class:`~amulet.exceptions.NotApplicableError`, with the
  reason and the layers to use instead, see :func:`amulet.io.dp_sgd_refusal`).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, check_param, validate_params
from amulet.exceptions import InvalidParameterError, NotApplicableError, NotRunError
from amulet.membership_inference.defenses._base import MembershipInferenceDefense
from amulet.progress import Progress, resolve_progress
from amulet.utils._seeding import derive_seed, make_generator
from amulet.utils._training import BatchTransform, TrainConfig

__all__ = [
    "DPSGD",
    "DPTrainingResult",
    "dp_stage_config",
    "dp_train",
    "is_uploaded_graph",
    "make_dp_compatible",
    "noise_for_epsilon",
    "poisson_schedule",
    "refuse_unless_dp_trainable",
    "spent_epsilon",
]

logger = logging.getLogger(__name__)

#: Attribute names under which a DP-trained model carries its privacy guarantee.
EPSILON_ATTRIBUTE = "privacy_epsilon_"
DELTA_ATTRIBUTE = "privacy_delta_"
NOISE_ATTRIBUTE = "privacy_noise_multiplier_"
#: Largest noise multiplier a target epsilon may pick (DPSGDParams.noise_multiplier has the same bound).
MAX_NOISE_MULTIPLIER = 1000.0

#: Fields of :class:`~amulet.utils.TrainConfig` the DP-SGD stage sets for itself (see :func:`dp_stage_config`).
STAGE_TRAINING_FIELDS = ("epochs", "batch_size", "lr", "optimizer")


@dataclass
class DPTrainingResult:
    """What :func:`dp_train` returns.

    Attributes:
        model: The trained plain model (no Opacus hooks), eval mode, carrying ``privacy_epsilon_`` and
            ``privacy_delta_``.
        epsilon: Spent epsilon at ``delta`` according to the accountant.
        delta: The target delta.
        sample_rate: Poisson sampling rate (expected batch size / dataset size).
        steps: Optimizer steps taken (one per logical batch).
        replaced_modules: ``"name: OldType -> NewType"`` for each module ``ModuleValidator.fix`` replaced.
        accountant: The accountant's name (``"rdp"``, ``"prv"`` or ``"gdp"``).
        batch_sizes: Size of every logical batch drawn (shows the Poisson sampling).
        noise_multiplier: The noise multiplier trained with (the one ``target_epsilon`` picked, if given).
        privacy_engine: The Opacus ``PrivacyEngine`` the training ran through (its accountant holds the
            history ``epsilon`` is computed from).
    """

    model: nn.Module
    epsilon: float
    delta: float
    sample_rate: float
    steps: int
    replaced_modules: list[str] = field(default_factory=list)
    accountant: str = "rdp"
    batch_sizes: list[int] = field(default_factory=list)
    noise_multiplier: float = 0.0
    privacy_engine: Any = None


def _replaced(before: nn.Module, after: nn.Module) -> list[str]:
    old = {name: type(m).__name__ for name, m in before.named_modules()}
    return [
        f"{name}: {old[name]} -> {type(m).__name__}"
        for name, m in after.named_modules()
        if name in old and old[name] != type(m).__name__
    ]


def is_uploaded_graph(model: nn.Module) -> bool:
    """Whether ``model`` is an uploaded graph (:class:`amulet.io.GraphModel`), trained through ``torch.func``."""
    from amulet.io._graph import GraphModel

    return isinstance(model, GraphModel)


def refuse_unless_dp_trainable(model: nn.Module) -> None:
    """Raise :class:`~amulet.exceptions.NotApplicableError` when DP-SGD cannot train the uploaded graph ``model``.

    A graph with BatchNorm has no per-sample gradient (the reason, and the layers to export instead, are
    :func:`amulet.io.dp_sgd_refusal`'s). Any other model passes.
    """
    if is_uploaded_graph(model):
        from amulet.io._graph import dp_sgd_refusal

        reason = dp_sgd_refusal(model)
        if reason:
            raise NotApplicableError(reason)


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that Opacus can train: BatchNorm replaced by GroupNorm (then ``ModuleValidator.fix``).

    ``BatchNorm1d`` (one value per channel and sample in an MLP) becomes ``GroupNorm(1, C)``, i.e. a
    per-sample normalisation over all features: Opacus' default ``GroupNorm(gcd(32, C), C)`` would put a
    single value in each group for 1-d features and normalise every activation to zero. Other unsupported
    modules (``BatchNorm2d`` ...) get Opacus' default fix.

    An uploaded graph (:class:`amulet.io.GraphModel`) is returned as it is: its operators, not its modules,
    compute the forward pass, so swapping a module would not change what it computes. DP-SGD trains it as
    uploaded, or refuses it when it has BatchNorm (:func:`refuse_unless_dp_trainable`).
    """
    from opacus.validators import ModuleValidator

    if is_uploaded_graph(model):
        return model
    fixed = copy.deepcopy(model)
    for name, module in list(fixed.named_modules()):
        if isinstance(module, nn.BatchNorm1d):
            parent_name, _, child = name.rpartition(".")
            parent = fixed.get_submodule(parent_name) if parent_name else fixed
            setattr(parent, child, nn.GroupNorm(1, module.num_features, affine=module.affine))
    return ModuleValidator.fix(fixed)


@functools.lru_cache(maxsize=1024)
def spent_epsilon(accountant: str, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """The epsilon that ``accountant`` reports at ``delta`` for a training ``history``, computed once per process.

    The accountant's answer depends only on the history of (noise multiplier, sample rate, steps) and on
    delta, and computing it (RDP over ~150 orders) costs about as much as training a small census model
    privately, so a population of identically trained models (LiRA shadows, distribution-inference
    models) asks for it once.

    Args:
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        history: Opacus' ``accountant.history``: (noise multiplier, sample rate, number of steps) entries.
        delta: Target delta.
    """
    from opacus.accountants import create_accountant

    if any(sigma == 0 and steps > 0 for sigma, _, steps in history):
        return math.inf  # no noise, no guarantee (the PRV accountant would overflow instead of saying so)
    engine_accountant = create_accountant(mechanism=accountant)
    engine_accountant.history = [tuple(entry) for entry in history]
    return float(engine_accountant.get_epsilon(delta))


def poisson_schedule(num_rows: int, batch_size: int) -> tuple[float, int]:
    """Opacus' Poisson sampling rate and steps per epoch for ``num_rows`` rows and an expected batch size.

    ``DPDataLoader.from_data_loader`` samples with rate ``1 / len(loader)`` (``len(loader) = ceil(n / B)``)
    and takes ``int(1 / rate)`` steps per epoch.
    """
    rate = 1.0 / -(-num_rows // max(1, min(batch_size, num_rows)))
    return rate, int(1 / rate)


@functools.lru_cache(maxsize=256)
def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose epsilon after ``steps`` is <= the target.

    Opacus' ``get_noise_multiplier`` (a bisection over the accountant), computed once per process for a
    given schedule, since every model of a population asks the same question.

    Raises:
        InvalidParameterError: the target cannot be reached with this schedule (budget too low).
    """
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
        # Opacus searches up to sigma 1e6, and the accountant slows down as sigma grows (minutes for an
        # unreachable target); noise beyond MAX_NOISE_MULTIPLIER leaves no utility, so check that bound first.
        floor = spent_epsilon(accountant, ((MAX_NOISE_MULTIPLIER, sample_rate, steps),), delta)
    if floor > target_epsilon:
        raise InvalidParameterError(
            f"target_epsilon={target_epsilon} cannot be reached at delta={delta} with {steps} steps at sampling "
            f"rate {sample_rate:.4g}: even noise multiplier {MAX_NOISE_MULTIPLIER:g} spends epsilon {floor:.3g} "
            f"({accountant} accountant); raise 'target_epsilon' or 'delta'."
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=accountant,
                )
            )
    except ValueError as err:
        raise InvalidParameterError(
            f"target_epsilon={target_epsilon} cannot be reached at delta={delta} with {steps} steps at sampling "
            f"rate {sample_rate:.4g} ({err}); raise 'target_epsilon' or lower 'epochs' / 'batch_size'."
        ) from err


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
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate({**config.model_dump(), **updates})
    except ValidationError as err:
        raise InvalidParameterError(f"Invalid DP-SGD training parameters {updates}: {err}") from err


def _set_graph_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Put the per-sample gradients of an uploaded graph in ``p.grad_sample``, where Opacus' optimizer reads them.

    Each sample's gradient is that of its own loss, ``criterion`` on the one sample: what Opacus' hooks store
    for a mean-reduced loss (they undo the mean), so clipping, noise and the division by the expected batch
    size are the same. Returns the batch's loss (for the progress report).
    """
    from amulet.io._graph import per_sample_gradients

    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if len(x) == 0:  # an empty Poisson batch: no sample, Opacus adds noise to a zero sum
        for _, p in params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)  # type: ignore[attr-defined]
        return torch.zeros((), device=x.device)
    grads = per_sample_gradients(model, x, y, loss=criterion)
    for name, p in params:
        p.grad_sample = grads[name]  # type: ignore[attr-defined]
    # The reported loss only: a second forward pass, which must not move the generator dropout draws from.
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        return criterion(model(x), y)


def _func_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Put ``torch.func`` per-sample gradients of a module in ``p.grad_sample``, where Opacus' optimizer reads them.

    The hook-free path of :func:`dp_train` (``per_sample="func"``): one ``vmap`` of ``grad_and_value`` over
    the batch instead of Opacus' forward and backward hooks, each sample's gradient being that of
    ``criterion`` on the one sample (what Opacus' hooks store for a mean-reduced loss). Opacus' optimizer then
    clips, adds noise and steps as it does for gradients from its hooks. Returns the batch's mean loss.
    """
    from torch.func import functional_call, grad_and_value, vmap

    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if len(x) == 0:  # an empty Poisson batch: no sample, Opacus adds noise to a zero sum
        for p in params.values():
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)  # type: ignore[attr-defined]
        return torch.zeros((), device=x.device)
    detached = {name: p.detach() for name, p in params.items()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return criterion(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    # Dropout draws differently for each sample (as it does in a batched forward pass).
    randomness = "different" if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()) else "error"
    grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness=randomness)(detached, x, y)
    for name, p in params.items():
        p.grad_sample = grads[name]  # type: ignore[attr-defined]
    return losses.mean()


def dp_train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: DataLoader,
    criterion: nn.Module,
    *,
    noise_multiplier: float | None = None,
    max_grad_norm: float,
    delta: float,
    epochs: int,
    target_epsilon: float | None = None,
    device: torch.device | str = "cpu",
    secure_rng: bool = False,
    accountant: str = "rdp",
    max_physical_batch_size: int | None = None,
    batch_transform: BatchTransform | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    privacy_engine: Any = None,
    per_sample: str = "func",
) -> DPTrainingResult:
    """Train ``model`` with DP-SGD through Opacus and return a hook-free copy with its epsilon.

    Args:
        model: Model to train; BatchNorm and other unsupported layers are replaced first (the caller's
            module is not modified when a replacement is needed; otherwise it is trained in place). An
            uploaded graph (:class:`amulet.io.GraphModel`) is trained as it is, with per-sample gradients from
            ``torch.func`` (see the module docstring).
        optimizer: Optimizer over ``model``'s parameters; rebuilt with the same class and defaults over the
            fixed model when modules were replaced.
        train_loader: Loader of (x, y) or (x, y, z); its dataset and batch size define the Poisson loader
            (sample rate = batch_size / len(dataset)).
        criterion: Loss with mean reduction (e.g. ``nn.CrossEntropyLoss()``).
        noise_multiplier: Gaussian noise std relative to ``max_grad_norm`` (sigma); required unless
            ``target_epsilon`` is given.
        max_grad_norm: Per-sample gradient clipping norm (C).
        delta: Target delta for the reported epsilon.
        epochs: Passes (in expectation) over the data.
        target_epsilon: If given, the noise multiplier is the smallest whose epsilon after this training
            (its sampling rate and steps, at ``delta``, with ``accountant``) is at most ``target_epsilon``
            (:func:`noise_for_epsilon`); ``noise_multiplier`` is then ignored.
        device: Torch device.
        secure_rng: Use Opacus' cryptographically secure generator (needs ``torchcsprng``); otherwise the
            sampling and noise come from generators seeded by ``seed``.
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        max_physical_batch_size: Split logical batches into physical ones of at most this size
            (Opacus ``BatchMemoryManager``); None disables it.
        batch_transform: Per-batch transform applied before each step (e.g. adversarial examples), with
            Opacus' hooks disabled so that it does not pollute per-sample gradients.
        seed: Seed of sampling, noise and the batch transform.
        progress: Progress reporter (task ``"dp_sgd"``).
        privacy_engine: An Opacus ``PrivacyEngine`` to train through (its accountant must be ``accountant``);
            default a new one. One used before keeps its history, so the epsilon composes both trainings.
        per_sample: How per-sample gradients are computed: ``"func"`` (default: ``torch.func``, one
            ``vmap`` over the batch, handed to Opacus' optimizer with ``grad_sample_mode="no_op"``) or
            ``"hooks"`` (Opacus' module hooks). Sampling, clipping, noise and accounting are Opacus' either
            way, and both give the same model to float rounding; ``"func"`` is faster and trains layers that
            Opacus has no hook for. An uploaded graph always uses ``torch.func``.

    Returns:
        A :class:`DPTrainingResult`.

    Raises:
        InvalidParameterError: neither ``noise_multiplier`` nor ``target_epsilon`` given, or an unreachable
            ``target_epsilon``.
        NotApplicableError: ``model`` is an uploaded graph with BatchNorm (the message says why and what to
            use instead).
    """
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from opacus.validators import ModuleValidator

    refuse_unless_dp_trainable(model)  # before any work: a BatchNorm graph has no per-sample gradient
    if per_sample not in {"func", "hooks"}:
        raise InvalidParameterError(
            f"The 'per_sample' parameter of dp_train must be 'func' or 'hooks'. Got {per_sample!r}."
        )
    progress = resolve_progress(progress)
    device = torch.device(device)
    if target_epsilon is not None:
        # DPDataLoader.from_data_loader: rate 1 / len(loader), int(1 / rate) steps per epoch.
        rate = 1.0 / len(train_loader)
        noise_multiplier = noise_for_epsilon(
            float(target_epsilon), float(delta), rate, int(1 / rate) * epochs, accountant
        )
    if noise_multiplier is None:
        raise InvalidParameterError("dp_train needs 'noise_multiplier' or 'target_epsilon'; give one of them.")
    graph = is_uploaded_graph(model)
    model = model.to(device)
    replaced: list[str] = []
    if graph:
        # Opacus checks the mode before wrapping; a graph's layers are operators its hooks cannot see, so the
        # per-sample gradients come from torch.func and Opacus only wraps the module ("no_op").
        model.train()
    elif ModuleValidator.validate(model, strict=False):
        fixed = make_dp_compatible(model).to(device)
        replaced = _replaced(model, fixed)
        logger.info("DP-SGD replaced modules Opacus cannot train privately: %s", "; ".join(replaced))
        optimizer = type(optimizer)(fixed.parameters(), **optimizer.defaults)
        model = fixed
    template = copy.deepcopy(model)  # plain architecture, used for the hook-free result
    engine = privacy_engine
    if engine is None:
        engine = PrivacyEngine(accountant=accountant, secure_mode=secure_rng)
    if engine.accountant.mechanism() != accountant:
        raise InvalidParameterError(
            f"The 'privacy_engine' parameter of dp_train must use the {accountant!r} accountant. "
            f"Got one with {engine.accountant.mechanism()!r} instead."
        )
    steps_before = sum(n for _, _, n in engine.accountant.history)
    # torch.func (no_op: Opacus only wraps the module) for graphs always, for other modules unless asked for hooks
    functional = graph or per_sample == "func"
    grad_sample_mode = "no_op" if functional else "hooks"
    if secure_rng:
        private_model, private_optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=train_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=grad_sample_mode,
        )
    else:
        # Build the Poisson loader ourselves so that its sampling generator is seeded (Opacus would use
        # the global generator), then hand it to Opacus as the loader to train on.
        poisson_loader = DPDataLoader.from_data_loader(
            train_loader, generator=make_generator(derive_seed(seed, "dp", "sampling"))
        )
        private_model, private_optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=poisson_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=False,
            noise_generator=make_generator(derive_seed(seed, "dp", "noise"), device),
            grad_sample_mode=grad_sample_mode,
        )
    sample_rate = 1.0 / len(loader)
    transform_gen = make_generator(derive_seed(seed, "dp", "transform"), device if device.type == "cuda" else "cpu")
    batch_sizes: list[int] = []
    progress.start("dp_sgd", epochs, "DP-SGD training")
    for epoch in range(epochs):
        private_model.train()
        total, count = 0.0, 0
        if max_physical_batch_size:
            manager = BatchMemoryManager(
                data_loader=loader, max_physical_batch_size=max_physical_batch_size, optimizer=private_optimizer
            )
            context = manager
        else:
            context = None
        iterator = context.__enter__() if context is not None else loader
        try:
            for batch in iterator:
                x, y = batch[0].to(device), batch[1].to(device)
                if context is None:
                    batch_sizes.append(len(x))
                if batch_transform is not None and len(x) > 0:
                    if not functional:
                        private_model.disable_hooks()
                    x, y = batch_transform(private_model._module, x, y, transform_gen)
                    if not functional:
                        private_model.enable_hooks()
                    private_model.train()
                private_optimizer.zero_grad(set_to_none=True)
                if graph:
                    loss = _set_graph_grad_samples(private_model._module, x, y, criterion)
                elif functional:
                    loss = _func_grad_samples(private_model._module, x, y, criterion)
                else:
                    loss = criterion(private_model(x), y)
                    with warnings.catch_warnings():
                        # Opacus' full backward hooks fire on the first layer, whose input needs no gradient.
                        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
                        loss.backward()
                private_optimizer.step()
                if len(x):
                    total += float(loss.detach()) * len(x)
                    count += len(x)
        finally:
            if context is not None:
                context.__exit__(None, None, None)
        progress.advance("dp_sgd", loss=round(total / max(count, 1), 5), epoch=epoch + 1)
    progress.finish("dp_sgd")
    epsilon = spent_epsilon(accountant, tuple(engine.accountant.history), float(delta))
    steps = sum(n for _, _, n in engine.accountant.history) - steps_before
    template.load_state_dict(private_model._module.state_dict())
    private_model._close()  # removes Opacus' hooks and grad_sample attributes from the trained module
    setattr(template, EPSILON_ATTRIBUTE, epsilon)
    setattr(template, DELTA_ATTRIBUTE, float(delta))
    setattr(template, NOISE_ATTRIBUTE, float(noise_multiplier))
    return DPTrainingResult(
        model=template.eval(),
        epsilon=epsilon,
        delta=float(delta),
        sample_rate=sample_rate,
        steps=int(steps),
        replaced_modules=replaced,
        accountant=accountant,
        batch_sizes=batch_sizes,
        noise_multiplier=float(noise_multiplier),
        privacy_engine=engine,
    )


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

    @property
    def privacy_engine(self) -> Any:
        """The Opacus ``PrivacyEngine`` that training runs through (this instance's accountant and secure_rng)."""
        engine = self._privacy_engine
        if engine is None or engine.accountant.mechanism() != self.accountant or engine.secure_mode != self.secure_rng:
            from opacus import PrivacyEngine

            check_param(type(self).__name__, "accountant", self.accountant, [Options({"rdp", "prv", "gdp"})])
            check_param(type(self).__name__, "secure_rng", self.secure_rng, [InstanceOf(bool)])
            engine = self._privacy_engine = PrivacyEngine(accountant=self.accountant, secure_mode=self.secure_rng)
        return engine

    def train_private(self) -> nn.Module:
        """Train with DP-SGD and return the plain, hook-free model (carrying ``privacy_epsilon_``)."""
        from amulet.utils._threads import layer1_threads

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
    from amulet.utils._training import make_optimizer

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
