"""Training loops: upstream's ``train_classifier`` and the seeded ``train_model`` used by recipes."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset
from torch.utils.data._utils.collate import default_collate

from amulet.progress import Progress, resolve_progress
from amulet.utils._flat_adam import flat_adam
from amulet.utils._seeding import make_generator
from amulet.utils._tensordata import TensorData
from amulet.utils._threads import layer1_threads
from amulet.utils._training_step import TrainingStep

__all__ = [
    "BatchTransform",
    "StackedBatchTransform",
    "TrainConfig",
    "has_batchnorm",
    "loader_batches",
    "make_optimizer",
    "run_epoch",
    "train_classifier",
    "train_model",
    "transform_generator",
]

logger = logging.getLogger(__name__)

#: A per-batch transform applied inside any training loop: ``(model, x, y, generator) -> (x, y)``.
#: Adversarial training is one (it replaces x by PGD examples made against the current model).
BatchTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
#: The same for K models trained as one stacked ensemble: ``(forward, x (K, n, ...), y (K, n), generators)``,
#: where ``forward`` gives the K models' eval-mode logits and ``generators[k]`` is model k's transform generator.
StackedBatchTransform = Callable[
    [Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor, Sequence[torch.Generator]],
    tuple[torch.Tensor, torch.Tensor],
]


class TrainConfig(BaseModel):
    """How a model is trained: the part of a recipe shared by every defense.

    Attributes:
        epochs: Passes over the training data.
        batch_size: Mini-batch size.
        lr: Learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        weight_decay: L2 penalty.
        momentum: SGD momentum (ignored by Adam).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=10, ge=1, le=10_000, description="Passes over the training data.")
    batch_size: int = Field(default=256, ge=1, le=1_000_000, description="Mini-batch size.")
    lr: float = Field(default=1e-3, gt=0, le=10, description="Learning rate.")
    optimizer: Literal["adam", "sgd"] = Field(default="adam", description="Optimizer.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="L2 penalty.")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam).")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``model``'s parameters."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _indexable(loader: Any) -> TensorDataset | None:
    """The ``TensorDataset`` of a plain single-process ``DataLoader`` that batches it with default collation."""
    if type(loader) is not DataLoader or type(loader.dataset) is not TensorDataset:
        return None  # a subclass (Opacus' DPDataLoader ...) or another dataset may fetch rows its own way
    if loader.num_workers or loader.collate_fn is not default_collate or loader.batch_sampler is None:
        return None
    if loader.pin_memory:
        return None
    return loader.dataset


def loader_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """The batches one pass over ``loader`` yields, fetched by indexing when it is a DataLoader over tensors.

    A ``DataLoader`` over a ``TensorDataset`` fetches every row with its own ``__getitem__`` and stacks them
    again (``default_collate``): on small tabular batches that costs as much as the training step. Here its
    index batches (``loader.batch_sampler``, the same sampler, so the same order from the same random draws,
    the iterator's base seed drawn first as ``DataLoader`` draws it) index the dataset's tensors in one
    operation each, which gives the same tensors ``default_collate`` stacks. Any other loader (workers, custom
    collation or dataset, a ``DataLoader`` subclass) is iterated as it is.

    Args:
        loader: Any iterable of batches, usually a ``DataLoader``.

    Yields:
        The batches (lists of tensors for a ``TensorDataset``, as ``default_collate`` gives them).
    """
    dataset = _indexable(loader)
    if dataset is None:
        yield from loader
        return
    assert isinstance(loader, DataLoader)
    tensors = dataset.tensors
    # _BaseDataLoaderIter draws its workers' base seed from the loader's generator at every new pass.
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    plan = _sampler_order(loader.batch_sampler, len(dataset))
    if plan is not None:
        order, finish = plan
        batch_size, drop_last = loader.batch_sampler.batch_size, loader.batch_sampler.drop_last  # type: ignore[union-attr]
        full = len(order) - len(order) % batch_size
        for start in range(0, full, batch_size):
            index = order[start : start + batch_size]
            yield [t[index] for t in tensors]
        finish()  # the sampler is asked past its last index before the last partial batch, or for the next batch
        if full < len(order) and not drop_last:
            index = order[full:]
            yield [t[index] for t in tensors]
        return
    for indices in loader.batch_sampler:  # type: ignore[union-attr]
        index = torch.as_tensor(indices, dtype=torch.long)
        yield [t[index] for t in tensors]


def _sampler_order(batch_sampler: Any, n: int) -> tuple[torch.Tensor, Callable[[], Any]] | None:
    """A pass's index order of torch's own ``BatchSampler`` over a sequential or plain random sampler.

    Returns the order as one tensor (instead of ``n`` Python ints) and what the sampler does once asked past
    its last index; None for any other sampler. ``RandomSampler.__iter__`` draws a seed from the global
    generator when it has none, then one ``randperm`` for the pass, and a second one (sliced to nothing)
    when it is asked past the end: the same draws, in the same order.
    """
    if type(batch_sampler) is not BatchSampler:
        return None
    sampler = batch_sampler.sampler
    if type(sampler) is SequentialSampler:
        return torch.arange(n), lambda: None
    if type(sampler) is RandomSampler and not sampler.replacement and sampler.num_samples == n:
        generator = sampler.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        return torch.randperm(n, generator=generator), lambda: torch.randperm(n, generator=generator)
    return None


def train_classifier(
    model: nn.Module,
    data_loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    early_stopping_patience: int = 25,
    *,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``model`` with the given loader, loss and optimizer (upstream-compatible).

    Early stopping watches the training loss: after ``early_stopping_patience`` epochs without
    improvement, training stops and the weights of the best epoch are restored.

    Args:
        model: Model to train (moved to ``device``).
        data_loader: Yields (x, y) or (x, y, z) batches; z is ignored.
        criterion: Loss function.
        optimizer: Optimizer over ``model``'s parameters.
        epochs: Maximum number of epochs.
        device: Torch device.
        scheduler: Optional LR scheduler, stepped once per epoch.
        early_stopping_patience: Epochs without training-loss improvement before stopping.
        progress: Progress reporter (task ``"train"``); silent when None.

    A ``DataLoader`` over a ``TensorDataset`` is read by indexing its tensors (:func:`loader_batches`: the
    same batches), and a small model trains with the layer-1 thread count
    (:func:`amulet.utils._threads.layer1_threads`).

    Returns:
        The trained model, in eval mode.
    """
    with layer1_threads(model):
        return _train_classifier(
            model, data_loader, criterion, optimizer, epochs, device, scheduler, early_stopping_patience, progress
        )


def _train_classifier(
    model: nn.Module,
    data_loader: Iterable[Any],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    early_stopping_patience: int,
    progress: Progress | None,
) -> nn.Module:
    progress = resolve_progress(progress)
    model.to(device)
    best_loss = float("inf")
    best_state = None
    stale = 0
    progress.start("train", epochs, "training")
    for epoch in range(epochs):
        count = 0

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            nonlocal count
            for batch in loader_batches(data_loader):
                count += len(batch[0])
                yield batch[0].to(device), batch[1].to(device)

        total = run_epoch(model, batches(), optimizer=optimizer, criterion=criterion)
        if scheduler is not None:
            scheduler.step()
        epoch_loss = total / max(count, 1)
        progress.advance("train", loss=round(epoch_loss, 5), epoch=epoch + 1)
        logger.debug("epoch %d loss %.5f", epoch + 1, epoch_loss)
        if epoch_loss < best_loss - 1e-6:
            best_loss, stale = epoch_loss, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= early_stopping_patience:
                logger.info("early stopping after %d epochs", epoch + 1)
                break
    if best_state is not None and stale > 0:
        model.load_state_dict(best_state)
    progress.finish("train")
    return model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` contains a BatchNorm layer (which cannot train on a batch of one sample)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def run_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    batch_transform: BatchTransform | None = None,
    transform_generator: torch.Generator | None = None,
) -> float:
    """One training pass over ``batches`` of (x, y, ...) with cross-entropy-style ``criterion``.

    ``batch_transform`` (e.g. adversarial examples) replaces each batch before its step; a batch of one is
    skipped when the model has BatchNorm (it cannot train on it). Shared by every loop that trains a
    classifier step by step (:func:`train_model`, adversarial debiasing's pretraining).

    Returns:
        The sum over batches of the loss times the batch's row count.
    """
    skip_singletons = has_batchnorm(model)
    model.train()
    total = 0.0
    with flat_adam(optimizer) as steps:
        step = TrainingStep(model, criterion, steps)
        for batch in batches:
            x, y = batch[0], batch[1]
            rows = len(x)
            if rows < 2 and skip_singletons:
                continue
            if batch_transform is not None:
                if transform_generator is None:
                    raise ValueError("run_epoch needs a transform_generator when a batch_transform is given.")
                x, y = batch_transform(model, x, y, transform_generator)
                model.train()
            steps.zero_grad()
            loss = step(x, y)  # criterion(model(x), y) and its backward, written out for an MLP chain
            steps.step()
            total += loss.item() * rows
    return total


def transform_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator a training run with ``seed`` hands to its batch transform (one per model)."""
    return make_generator(seed + 1, device if device.type == "cuda" else "cpu")


def train_model(
    model: nn.Module,
    data: TensorData,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    batch_transform: BatchTransform | None = None,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``model`` on ``data`` with cross-entropy, the order of batches fixed by ``seed``.

    This is the baseline training recipe. ``batch_transform`` (e.g. adversarial examples) is applied to
    every batch before the step. The result depends only on the inputs: the same seed gives the same
    weights on the same device.

    Returns:
        The trained model, in eval mode.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    model.to(device)
    optimizer = make_optimizer(model, config)
    criterion = nn.CrossEntropyLoss()
    shuffle_gen = make_generator(seed)
    transform_gen = transform_generator(seed, device)
    x_all, y_all = data.x.to(device), data.y.to(device)
    n = len(data)
    progress.start("train", config.epochs, "training")
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle_gen).to(device)
        batches = ((x_all[idx], y_all[idx]) for idx in order.split(config.batch_size))
        total = run_epoch(
            model,
            batches,
            optimizer=optimizer,
            criterion=criterion,
            batch_transform=batch_transform,
            transform_generator=transform_gen,
        )
        progress.advance("train", loss=round(total / max(n, 1), 5), epoch=epoch + 1)
    progress.finish("train")
    return model.eval()
