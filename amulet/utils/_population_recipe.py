"""What the population trainer needs from a training recipe, and the plain recipe itself.

:func:`amulet.utils.train_population` trains K models "as ``recipe.train`` would". It must not import the
defense layer (:mod:`amulet.recipes` builds on these utilities), so it is written against the
:class:`PopulationRecipe` protocol, which :class:`amulet.recipes.Recipe` implements, and a bare
:class:`~amulet.utils.TrainConfig` becomes a :class:`PlainRecipe` (ordinary training, no defense).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from amulet.progress import Progress, resolve_progress
from amulet.utils._seeding import seeded_init
from amulet.utils._tensordata import TensorData
from amulet.utils._training import StackedBatchTransform, TrainConfig, train_model

__all__ = ["PlainRecipe", "PopulationRecipe", "StackedLoop"]

#: Trains K fresh models at once, each exactly as the recipe's own loop would:
#: ``(models, datas, *, config, seeds, device, progress) -> list[nn.Module]``.
StackedLoop = Callable[..., list[nn.Module]]


@runtime_checkable
class PopulationRecipe(Protocol):
    """A training recipe as :func:`amulet.utils.train_population` uses it (see :class:`amulet.recipes.Recipe`)."""

    config: TrainConfig
    name: str

    @property
    def key(self) -> str:
        """Canonical JSON of everything that determines the recipe's output (part of the cache key)."""
        ...

    @property
    def has_data_stages(self) -> bool:
        """True when :meth:`prepare_data` changes the training rows."""
        ...

    @property
    def has_post_stages(self) -> bool:
        """True when :meth:`finish_model` changes the trained model."""
        ...

    @property
    def stacked_loop(self) -> StackedLoop | None:
        """The recipe's own stacked training loop (DP-SGD), or None for the plain batched loop."""
        ...

    @property
    def stacked_batch_transform(self) -> StackedBatchTransform | None:
        """The stacked form of the recipe's batch transforms (None without any)."""
        ...

    def stacking_reason(self) -> str:
        """Empty when populations of the recipe can train stacked, else why not."""
        ...

    def prepare_data(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device,
        progress: Progress,
    ) -> TensorData:
        """The training rows after the recipe's data stages."""
        ...

    def finish_model(
        self, model: nn.Module, data: TensorData, *, seed: int, device: torch.device, progress: Progress
    ) -> nn.Module:
        """The model after the recipe's post-training stages, in eval mode."""
        ...

    def train(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
    ) -> nn.Module:
        """One model trained from scratch with ``seed``."""
        ...


class PlainRecipe:
    """Ordinary training (:func:`amulet.utils.train_model`) with ``config``: the recipe without defenses.

    Its :attr:`key` equals that of ``amulet.recipes.Recipe(config)``, so both share cached models.

    Args:
        config: Epochs, batch size, optimizer.
    """

    name = "baseline"
    has_data_stages = False
    has_post_stages = False
    stacked_loop: StackedLoop | None = None
    stacked_batch_transform: StackedBatchTransform | None = None

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def key(self) -> str:
        """Canonical JSON of the configuration and the (empty) list of stages."""
        return json.dumps(
            {"config": self.config.model_dump(mode="json"), "stages": []},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    def stacking_reason(self) -> str:
        """Always empty: plain training stacks."""
        return ""

    def prepare_data(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device,
        progress: Progress,
    ) -> TensorData:
        """``data`` unchanged."""
        return data

    def finish_model(
        self, model: nn.Module, data: TensorData, *, seed: int, device: torch.device, progress: Progress
    ) -> nn.Module:
        """``model`` in eval mode."""
        return model.eval()

    def train(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
    ) -> nn.Module:
        """``train_model(seeded_init(model_factory, seed), data, config=self.config, seed=seed)``."""
        device = torch.device(device)
        model = seeded_init(model_factory, seed).to(device)
        return train_model(
            model, data, config=self.config, seed=seed, device=device, progress=resolve_progress(progress)
        )
