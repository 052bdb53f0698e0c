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
  ``privacy_epsilon_`` (with ``privacy_delta_``); the interaction engine reads it from the model.
"""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, validate_params
from amulet.exceptions import NotRunError
from amulet.membership_inference.defenses._base import MembershipInferenceDefense
from amulet.progress import Progress, resolve_progress
from amulet.utils._seeding import derive_seed, make_generator
from amulet.utils._training import BatchTransform

__all__ = ["DPSGD", "DPTrainingResult", "dp_train", "make_dp_compatible", "spent_epsilon"]

logger = logging.getLogger(__name__)

#: Attribute names under which a DP-trained model carries its privacy guarantee.
EPSILON_ATTRIBUTE = "privacy_epsilon_"
DELTA_ATTRIBUTE = "privacy_delta_"


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
    """

    model: nn.Module
    epsilon: float
    delta: float
    sample_rate: float
    steps: int
    replaced_modules: list[str] = field(default_factory=list)
    accountant: str = "rdp"
    batch_sizes: list[int] = field(default_factory=list)


def _replaced(before: nn.Module, after: nn.Module) -> list[str]:
    old = {name: type(m).__name__ for name, m in before.named_modules()}
    return [
        f"{name}: {old[name]} -> {type(m).__name__}"
        for name, m in after.named_modules()
        if name in old and old[name] != type(m).__name__
    ]


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that Opacus can train: BatchNorm replaced by GroupNorm (then ``ModuleValidator.fix``).

    ``BatchNorm1d`` (one value per channel and sample in an MLP) becomes ``GroupNorm(1, C)``, i.e. a
    per-sample normalisation over all features: Opacus' default ``GroupNorm(gcd(32, C), C)`` would put a
    single value in each group for 1-d features and normalise every activation to zero. Other unsupported
    modules (``BatchNorm2d`` ...) get Opacus' default fix.
    """
    from opacus.validators import ModuleValidator

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

    engine_accountant = create_accountant(mechanism=accountant)
    engine_accountant.history = [tuple(entry) for entry in history]
    return float(engine_accountant.get_epsilon(delta))


def dp_train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: DataLoader,
    criterion: nn.Module,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    delta: float,
    epochs: int,
    device: torch.device | str = "cpu",
    secure_rng: bool = False,
    accountant: str = "rdp",
    max_physical_batch_size: int | None = None,
    batch_transform: BatchTransform | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DPTrainingResult:
    """Train ``model`` with DP-SGD through Opacus and return a hook-free copy with its epsilon.

    Args:
        model: Model to train; BatchNorm and other unsupported layers are replaced first (the caller's
            module is not modified when a replacement is needed; otherwise it is trained in place).
        optimizer: Optimizer over ``model``'s parameters; rebuilt with the same class and defaults over the
            fixed model when modules were replaced.
        train_loader: Loader of (x, y) or (x, y, z); its dataset and batch size define the Poisson loader
            (sample rate = batch_size / len(dataset)).
        criterion: Loss with mean reduction (e.g. ``nn.CrossEntropyLoss()``).
        noise_multiplier: Gaussian noise std relative to ``max_grad_norm`` (sigma).
        max_grad_norm: Per-sample gradient clipping norm (C).
        delta: Target delta for the reported epsilon.
        epochs: Passes (in expectation) over the data.
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

    Returns:
        A :class:`DPTrainingResult`.
    """
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from opacus.validators import ModuleValidator

    progress = resolve_progress(progress)
    device = torch.device(device)
    model = model.to(device)
    replaced: list[str] = []
    if ModuleValidator.validate(model, strict=False):
        fixed = make_dp_compatible(model).to(device)
        replaced = _replaced(model, fixed)
        logger.info("DP-SGD replaced modules Opacus cannot train privately: %s", "; ".join(replaced))
        optimizer = type(optimizer)(fixed.parameters(), **optimizer.defaults)
        model = fixed
    template = copy.deepcopy(model)  # plain architecture, used for the hook-free result
    engine = PrivacyEngine(accountant=accountant, secure_mode=secure_rng)
    if secure_rng:
        private_model, private_optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=train_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
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
                    private_model.disable_hooks()
                    x, y = batch_transform(private_model._module, x, y, transform_gen)
                    private_model.enable_hooks()
                    private_model.train()
                private_optimizer.zero_grad(set_to_none=True)
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
    steps = sum(n for _, _, n in engine.accountant.history)
    template.load_state_dict(private_model._module.state_dict())
    private_model._close()  # removes Opacus' hooks and grad_sample attributes from the trained module
    setattr(template, EPSILON_ATTRIBUTE, epsilon)
    setattr(template, DELTA_ATTRIBUTE, float(delta))
    return DPTrainingResult(
        model=template.eval(),
        epsilon=epsilon,
        delta=float(delta),
        sample_rate=sample_rate,
        steps=int(steps),
        replaced_modules=replaced,
        accountant=accountant,
        batch_sizes=batch_sizes,
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
        sigma (float): Noise multiplier, >= 0.
        secure_rng (bool): Cryptographically secure sampling and noise (needs ``torchcsprng``). Default False.
        epochs (int): Training epochs, >= 1. Default 5.
        max_physical_batch_size (int | None): Largest physical batch (memory), or None. Default None.
        accountant (str): Keyword-only. ``"rdp"`` (default), ``"prv"`` or ``"gdp"``.
        seed (int): Keyword-only. Seed of Poisson sampling and noise (ignored with ``secure_rng``). Default 0.
        progress (Progress | None): Keyword-only. Progress reporter.

    Attributes:
        epsilon_ (float): Spent epsilon at ``delta`` (also ``privacy_epsilon_`` on the returned model).
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
        accountant: str = "rdp",
        seed: int = 0,
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
        self.progress = progress

    def train_private(self) -> nn.Module:
        """Train with DP-SGD and return the plain, hook-free model (carrying ``privacy_epsilon_``)."""
        validate_params(self)
        result = dp_train(
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
            progress=self.progress,
        )
        self.epsilon_ = result.epsilon
        self.sample_rate_ = result.sample_rate
        self.steps_ = result.steps
        self.replaced_modules_ = result.replaced_modules
        self.batch_sizes_ = result.batch_sizes
        return result.model

    def get_epsilon(self) -> float:
        """The epsilon spent by :meth:`train_private` (at ``delta``)."""
        if not hasattr(self, "epsilon_"):
            raise NotRunError("This DPSGD instance has not trained yet; call train_private() first.")
        return self.epsilon_


def dp_sgd_loop(
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    delta: float,
    accountant: str = "rdp",
    max_physical_batch_size: int | None = None,
) -> Any:
    """The training loop of the ``dp_sgd`` recipe stage (:class:`amulet.recipes.LoopStage`).

    The loop uses the recipe's optimizer (class, learning rate, weight decay), epochs and batch size (as the
    expected Poisson batch size) and applies the recipe's batch transforms (so DP-SGD + adversarial training
    trains privately on PGD examples). The returned model carries ``privacy_epsilon_`` and ``privacy_delta_``.
    """
    from amulet.utils._training import make_optimizer

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
        result = dp_train(
            model,
            make_optimizer(model, config),
            data.loader(min(config.batch_size, len(data))),
            nn.CrossEntropyLoss(),
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            delta=delta,
            epochs=config.epochs,
            device=device,
            accountant=accountant,
            max_physical_batch_size=max_physical_batch_size,
            batch_transform=batch_transform,
            seed=seed,
            progress=progress,
        )
        return result.model

    return train
