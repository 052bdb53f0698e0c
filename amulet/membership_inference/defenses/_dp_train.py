"""DP-SGD training (:func:`dp_train`): Opacus' procedure, run by Opacus or, by default, without its wrappers.

The default path runs Opacus' DP-SGD step by step without ``make_private``: Poisson sampling with the draws of
Opacus' ``DPDataLoader``, per-sample clipping by ghost clipping or ``torch.func`` (:mod:`._dp_gradients`), the
Gaussian noise of Opacus' optimizer from the same seeded generator, the caller's optimizer, and an Opacus
``PrivacyEngine`` whose accountant records every step (so the epsilon is the accountant's, as before). The
Opacus path (``per_sample="hooks"``, or ``secure_rng``, whose secure generator only Opacus has) wraps the model
and optimizer with ``make_private``; both give the same model to float rounding
(``tests/membership_inference/test_dpsgd_func_path.py``).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate

from amulet.exceptions import InvalidParameterError
from amulet.membership_inference.defenses._dp_accounting import (
    DELTA_ATTRIBUTE,
    EPSILON_ATTRIBUTE,
    NOISE_ATTRIBUTE,
    noise_for_epsilon,
    spent_epsilon,
)
from amulet.membership_inference.defenses._dp_gradients import (
    clipped_sum,
    ghost_layers,
    set_func_grad_samples,
    set_graph_grad_samples,
)
from amulet.membership_inference.defenses._dp_models import (
    is_uploaded_graph,
    make_dp_compatible,
    refuse_unless_dp_trainable,
    replaced_modules,
)
from amulet.progress import Progress, resolve_progress
from amulet.utils import BatchTransform, derive_seed, make_generator

__all__ = ["PER_SAMPLE_MODES", "DPTrainingResult", "dp_train"]

logger = logging.getLogger(__name__)

#: How :func:`dp_train` computes the clipped per-sample gradients (see its ``per_sample`` argument).
PER_SAMPLE_MODES = ("ghost", "func", "hooks")


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
    per_sample: str = "ghost",
) -> DPTrainingResult:
    """Train ``model`` with DP-SGD (Opacus' procedure) and return a plain copy with its epsilon.

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
        per_sample: How the clipped per-sample gradients are computed: ``"ghost"`` (default: ghost clipping
            where every trainable parameter is in an ``nn.Linear`` layer, ``torch.func`` per-sample gradients
            otherwise, :mod:`._dp_gradients`), ``"func"`` (``torch.func`` per-sample gradients, the engine's
            path) or ``"hooks"`` (Opacus' module hooks and optimizer, ``make_private``). Poisson sampling, noise
            and accounting are Opacus' procedure either way (the same draws from the same seeded generators, the
            same accountant), and the three give the same model to float rounding; ``"ghost"`` and ``"func"``
            run without Opacus' wrappers (no hooks on the module, no per-sample loader). ``secure_rng`` always
            goes through Opacus (its secure generator), with ``torch.func`` per-sample gradients unless
            ``"hooks"``. An uploaded graph always uses ``torch.func`` (:func:`amulet.io.per_sample_gradients`).

    Returns:
        A :class:`DPTrainingResult`.

    Raises:
        InvalidParameterError: neither ``noise_multiplier`` nor ``target_epsilon`` given, or an unreachable
            ``target_epsilon``.
        NotApplicableError: ``model`` is an uploaded graph with BatchNorm (the message says why and what to
            use instead).
    """
    # Opacus is imported when DP-SGD runs, not with amulet (it costs about as much as the rest of the package).
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from opacus.validators import ModuleValidator

    refuse_unless_dp_trainable(model)  # before any work: a BatchNorm graph has no per-sample gradient
    if per_sample not in PER_SAMPLE_MODES:
        raise InvalidParameterError(
            f"The 'per_sample' parameter of dp_train must be one of {list(PER_SAMPLE_MODES)}. Got {per_sample!r}."
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
        replaced = replaced_modules(model, fixed)
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
    if not secure_rng and per_sample != "hooks":
        sizes, rate = _train_without_opacus(
            model,
            optimizer,
            train_loader,
            criterion,
            engine=engine,
            noise_multiplier=float(noise_multiplier),
            max_grad_norm=float(max_grad_norm),
            epochs=epochs,
            device=device,
            max_physical_batch_size=max_physical_batch_size,
            batch_transform=batch_transform,
            seed=seed,
            progress=progress,
            ghost=per_sample == "ghost" and not graph,
            graph=graph,
        )
        template.load_state_dict(model.state_dict())
        return _result(template, engine, accountant, delta, noise_multiplier, rate, steps_before, replaced, sizes)
    # Through Opacus (secure_rng, or hooks asked for): torch.func per-sample gradients ("no_op": Opacus only wraps
    # the module) for graphs always, for other modules unless asked for hooks
    functional = graph or per_sample != "hooks"
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
                    loss = set_graph_grad_samples(private_model._module, x, y, criterion)
                elif functional:
                    loss = set_func_grad_samples(private_model._module, x, y, criterion)
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
    template.load_state_dict(private_model._module.state_dict())
    private_model._close()  # removes Opacus' hooks and grad_sample attributes from the trained module
    return _result(
        template, engine, accountant, delta, noise_multiplier, sample_rate, steps_before, replaced, batch_sizes
    )


def _result(
    model: nn.Module,
    engine: Any,
    accountant: str,
    delta: float,
    noise_multiplier: float,
    sample_rate: float,
    steps_before: int,
    replaced: list[str],
    batch_sizes: list[int],
) -> DPTrainingResult:
    """The result of a training through ``engine``: its accountant's epsilon, set on the plain ``model`` too."""
    epsilon = spent_epsilon(accountant, tuple(engine.accountant.history), float(delta))
    steps = sum(n for _, _, n in engine.accountant.history) - steps_before
    setattr(model, EPSILON_ATTRIBUTE, epsilon)
    setattr(model, DELTA_ATTRIBUTE, float(delta))
    setattr(model, NOISE_ATTRIBUTE, float(noise_multiplier))
    return DPTrainingResult(
        model=model.eval(),
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


def _poisson_batches(dataset: Any, sample_rate: float, steps: int, generator: torch.Generator) -> Any:
    """One epoch of Opacus' ``DPDataLoader``: the same draws from ``generator``, the same rows in each batch.

    The loader's iterator draws its workers' base seed (an int64) first, then ``UniformWithReplacementSampler``
    draws ``torch.rand(n) < sample_rate`` per step. A ``TensorDataset`` is indexed directly; any other dataset
    row by row with ``default_collate``, as the loader fetches it.
    """
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    n = len(dataset)
    tensors = dataset.tensors if type(dataset) is TensorDataset else None
    for _ in range(steps):
        index = (torch.rand(n, generator=generator) < sample_rate).nonzero().reshape(-1)
        if tensors is not None:
            yield [t[index] for t in tensors]
        elif len(index):
            yield default_collate([dataset[int(i)] for i in index])
        else:
            first = default_collate([dataset[0]])  # an empty batch shaped like the rows, as Opacus' collate gives
            yield [t[:0] for t in first]


def _train_without_opacus(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: DataLoader,
    criterion: nn.Module,
    *,
    engine: Any,
    noise_multiplier: float,
    max_grad_norm: float,
    epochs: int,
    device: torch.device,
    max_physical_batch_size: int | None,
    batch_transform: BatchTransform | None,
    seed: int,
    progress: Progress,
    ghost: bool,
    graph: bool,
) -> tuple[list[int], float]:
    """DP-SGD as Opacus runs it (Poisson sampling, clipping, noise, accountant steps), without its wrappers.

    The sampling draws from the generator :func:`dp_train` seeds for Opacus' ``DPDataLoader``, with the same
    sample rate (``1 / len(train_loader)``) and steps per epoch; the clipped per-sample gradients are summed
    (:func:`clipped_sum`: ghost clipping or ``torch.func``); the noise is ``torch.normal(0, sigma * C)`` from the
    noise generator, one draw per parameter in the optimizer's order, added to the sum, which is then divided
    by Opacus' expected batch size; the caller's optimizer steps (empty batches included, as Opacus does), and
    ``engine``'s accountant records every step. ``model`` is trained in place.

    Returns:
        The logical batch sizes and the sample rate the accountant recorded.
    """
    dataset = train_loader.dataset
    mask_rate = 1.0 / len(train_loader)  # DPDataLoader.from_data_loader's sample rate ...
    steps = int(1 / mask_rate)  # ... and UniformWithReplacementSampler's steps
    sample_rate = 1.0 / steps  # make_private's: 1 / len(the Poisson loader), for the accountant and the scale
    expected = int(len(dataset) * sample_rate)  # type: ignore[arg-type]
    sampling = make_generator(derive_seed(seed, "dp", "sampling"))
    noise = make_generator(derive_seed(seed, "dp", "noise"), device)
    transform_gen = make_generator(derive_seed(seed, "dp", "transform"), device if device.type == "cuda" else "cpu")
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    std = noise_multiplier * max_grad_norm
    grads_fn = None
    if graph:
        # Lazy for its import cost: amulet.io loads every model-file reader (ONNX, torch.export) on import.
        from amulet.io._graph import per_sample_gradients

        def grads_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: nn.Module) -> dict[str, torch.Tensor]:
            return per_sample_gradients(m, x, y, loss=loss)

    layers = ghost_layers(model) if ghost and grads_fn is None else None
    batch_sizes: list[int] = []
    progress.start("dp_sgd", epochs, "DP-SGD training")
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for batch in _poisson_batches(dataset, mask_rate, steps, sampling):
            x_all, y_all = batch[0].to(device), batch[1].to(device)
            batch_sizes.append(len(x_all))
            physical = max_physical_batch_size or max(len(x_all), 1)
            summed: dict[torch.Tensor, torch.Tensor] = {}
            for start in range(0, max(len(x_all), 1), physical):
                x, y = x_all[start : start + physical], y_all[start : start + physical]
                if batch_transform is not None and len(x) > 0:
                    x, y = batch_transform(model, x, y, transform_gen)
                    model.train()
                part, _, loss = clipped_sum(model, x, y, criterion, max_grad_norm, layers=layers, grads_fn=grads_fn)
                for p, g in part.items():
                    summed[p] = summed[p] + g if p in summed else g
                if len(x):
                    total += float(loss) * len(x)
                    count += len(x)
            for p in params:
                grad = summed[p].detach().clone() if p in summed else torch.zeros_like(p)
                if std > 0:
                    grad += torch.normal(0.0, std, size=p.shape, device=p.device, generator=noise)
                p.grad = grad.view_as(p) / expected
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            engine.accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        progress.advance("dp_sgd", loss=round(total / max(count, 1), 5), epoch=epoch + 1)
    progress.finish("dp_sgd")
    return batch_sizes, sample_rate
