"""Training recipes: a defense is a way of training a model.

A :class:`Recipe` turns (a model factory, training data, a seed) into a trained model. The baseline recipe
is ordinary training (:func:`amulet.utils.train_model`). A defended recipe is the baseline's
:class:`~amulet.utils.TrainConfig` plus an ordered list of :class:`Stage` objects, one per defense, each of
one of four kinds:

``data``
    transforms the training data before training (outlier removal). ``DataStage.apply``.
``batch``
    transforms every training batch inside whatever loop trains the model (adversarial training
    makes PGD examples against the current model). ``BatchStage.transform``.
``loop``
    replaces the training loop (DP-SGD, adversarial debiasing). At most one per recipe; the loop must
    apply the batch transforms it is given. ``LoopStage.train``.
``post``
    changes the trained model afterwards (watermark embedding) or only records a verification
    procedure (fingerprinting). ``PostStage.apply``.

So a stack such as DP-SGD + adversarial training is DP-SGD's loop running on PGD batches. Risks that
must imitate the target's training (poisoning, LiRA shadows, distribution-inference populations) call
:meth:`Recipe.train` with their own data and seed: a defended target gets defended shadows. Populations
(:func:`amulet.utils.train_population`, which sees a recipe through the
:class:`amulet.utils._population_recipe.PopulationRecipe` protocol and never imports this module) train as
one stacked ensemble when :meth:`Recipe.stacking_reason` is empty: data and post stages then run per model
around the ensemble, and batch stages through their ``stacked_transform``.

A recipe's :attr:`Recipe.key` is canonical JSON of everything that determines its output; together with
the architecture, the data hash and the seed it keys the model cache.

Example:
    >>> from amulet.recipes import Recipe
    >>> from amulet.utils import TrainConfig
    >>> Recipe(TrainConfig(epochs=2)).is_plain
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from amulet.progress import Progress, resolve_progress
from amulet.utils import BatchTransform, StackedBatchTransform, TensorData, TrainConfig, seeded_init, train_model
from amulet.utils._population_recipe import StackedLoop

__all__ = ["BatchStage", "DataStage", "LoopStage", "PostStage", "Recipe", "Stage"]


@dataclass
class _StageBase:
    """Fields every stage has: the registry key of its defense and its parameters (JSON-able)."""

    defense: str
    params: dict[str, Any] = field(default_factory=dict)
    #: Optional: turns a fresh model of the architecture into the structure this stage trains (e.g. DP-SGD
    #: replaces BatchNorm by GroupNorm), so that cached weights of a defended model can be loaded back.
    adapt_model: Callable[[nn.Module], nn.Module] | None = field(default=None, kw_only=True, repr=False)

    def describe(self) -> dict[str, Any]:
        return {"defense": self.defense, "kind": self.kind, "params": self.params}  # type: ignore[attr-defined]


@dataclass
class DataStage(_StageBase):
    """Transforms training data before training.

    ``apply(model_factory, data, *, config, seed, device, progress) -> TensorData``
    """

    apply: Callable[..., TensorData] | None = None
    kind: Literal["data"] = "data"


@dataclass
class BatchStage(_StageBase):
    """Transforms every training batch: ``transform(model, x, y, generator) -> (x, y)``.

    ``stacked_transform(forward, x, y, generators) -> (x, y)`` is the same transform for K models trained as
    one stacked ensemble (x of shape (K, n, ...)); it must give model ``k`` exactly what ``transform`` gives
    it. Without it, populations of a recipe with this stage are trained one model at a time.
    """

    transform: BatchTransform | None = None
    stacked_transform: StackedBatchTransform | None = None
    kind: Literal["batch"] = "batch"


@dataclass
class LoopStage(_StageBase):
    """Replaces the training loop.

    ``train(model, data, *, config, seed, device, batch_transform, progress) -> nn.Module``
    """

    train: Callable[..., nn.Module] | None = None
    #: Optional: trains K fresh models at once, each exactly as ``train`` would
    #: (``train_stacked(models, datas, *, config, seeds, device, progress) -> list[nn.Module]``); with it,
    #: populations of the recipe train stacked (without batch stages).
    train_stacked: Callable[..., list[nn.Module]] | None = None
    kind: Literal["loop"] = "loop"


@dataclass
class PostStage(_StageBase):
    """Runs after training: ``apply(model, data, *, config, seed, device, progress) -> nn.Module``."""

    apply: Callable[..., nn.Module] | None = None
    kind: Literal["post"] = "post"


Stage = DataStage | BatchStage | LoopStage | PostStage


def _compose_stacked(transforms: list[StackedBatchTransform]) -> StackedBatchTransform | None:
    if len(transforms) <= 1:
        return transforms[0] if transforms else None

    def composed(
        forward: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        generators: Sequence[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for t in transforms:
            x, y = t(forward, x, y, generators)
        return x, y

    return composed


def _compose(transforms: list[BatchTransform]) -> BatchTransform | None:
    if not transforms:
        return None
    if len(transforms) == 1:
        return transforms[0]

    def composed(
        model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for t in transforms:
            x, y = t(model, x, y, gen)
        return x, y

    return composed


class Recipe:
    """A training pipeline: a base :class:`TrainConfig` plus defense stages.

    Args:
        config: Optimiser, epochs, batch size... shared by every stage.
        stages: Defense stages, in the order they were stacked.
        name: Human label (defaults to the defenses' keys joined by ``+`` or ``"baseline"``).

    Raises:
        ValueError: if more than one stage replaces the training loop.
    """

    def __init__(self, config: TrainConfig, stages: list[Stage] | tuple[Stage, ...] = (), *, name: str | None = None):
        self.config = config
        self.stages = tuple(stages)
        loops = [s for s in self.stages if s.kind == "loop"]
        if len(loops) > 1:
            raise ValueError(
                "A defense stack may contain at most one defense that replaces the training loop; got "
                + ", ".join(repr(s.defense) for s in loops)
                + ". Stack it with data, batch or post-training defenses instead."
            )
        self.name = name or ("+".join(s.defense for s in self.stages) or "baseline")

    @property
    def defense_keys(self) -> tuple[str, ...]:
        """Registry keys of the stacked defenses (empty for the baseline)."""
        return tuple(s.defense for s in self.stages)

    @property
    def is_plain(self) -> bool:
        """True for ordinary training (no defense stages)."""
        return not self.stages

    def stacking_reason(self) -> str:
        """Empty when populations of this recipe can train as one stacked ensemble, else the reason not.

        Data stages run per model before the ensemble trains and post stages per model after it, so they
        never prevent stacking; a loop stage without ``train_stacked`` (or with batch stages next to it), a
        stage that changes the model's structure outside a stacked loop, or a batch stage without a
        ``stacked_transform`` does.
        """
        loop = self.loop_stage
        for s in self.stages:
            if isinstance(s, LoopStage):
                if s.train_stacked is None:
                    return f"defense {s.defense!r} replaces the training loop"
                continue  # its stacked loop builds the structure it declares
            if s.adapt_model is not None:
                return f"defense {s.defense!r} changes the model's structure"
            if isinstance(s, BatchStage) and s.transform is not None:
                if loop is not None:
                    return f"defense {loop.defense!r} trains populations stacked only without batch stages"
                if s.stacked_transform is None:
                    return f"defense {s.defense!r} transforms batches but has no stacked_transform"
        return ""

    @property
    def loop_stage(self) -> LoopStage | None:
        """The stage that replaces the training loop, if any."""
        return next((s for s in self.stages if isinstance(s, LoopStage)), None)

    @property
    def has_data_stages(self) -> bool:
        """True when a data stage changes the training rows (:meth:`prepare_data` is not the identity)."""
        return any(isinstance(s, DataStage) for s in self.stages)

    @property
    def has_post_stages(self) -> bool:
        """True when a post stage runs after training (:meth:`finish_model` does more than ``eval()``)."""
        return any(isinstance(s, PostStage) for s in self.stages)

    @property
    def stacked_loop(self) -> StackedLoop | None:
        """The loop stage's ``train_stacked`` (DP-SGD's, adversarial debiasing's), or None."""
        loop = self.loop_stage
        return None if loop is None else loop.train_stacked

    @property
    def stacked_batch_transform(self) -> StackedBatchTransform | None:
        """The batch stages' stacked transforms, composed in stack order (None without batch stages)."""
        stacked = [s.stacked_transform for s in self.stages if isinstance(s, BatchStage) and s.stacked_transform]
        return _compose_stacked(stacked)

    @property
    def key(self) -> str:
        """Canonical JSON of everything that determines this recipe's output (for cache keys)."""
        return json.dumps(
            {"config": self.config.model_dump(mode="json"), "stages": [s.describe() for s in self.stages]},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    def architecture(self, model_factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        """A factory of the structure of this recipe's trained models.

        ``model_factory``'s model, passed through every stage's ``adapt_model`` (when a stage declares one), so
        weights saved from a model this recipe trained load back into it.
        """
        adapters = [s.adapt_model for s in self.stages if s.adapt_model is not None]
        if not adapters:
            return model_factory

        def factory() -> nn.Module:
            model = model_factory()
            for adapt in adapters:
                model = adapt(model)
            return model

        return factory

    def stage(self, defense: str) -> Stage | None:
        """The stage contributed by ``defense``, or None."""
        for s in self.stages:
            if s.defense == defense:
                return s
        return None

    def train(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
    ) -> nn.Module:
        """Train a fresh model from ``model_factory`` on ``data`` with this recipe and ``seed``.

        Returns:
            The trained model, in eval mode, on ``device``.
        """
        progress = resolve_progress(progress)
        device = torch.device(device)
        data = self.prepare_data(model_factory, data, seed=seed, device=device, progress=progress)
        transform = _compose([s.transform for s in self.stages if isinstance(s, BatchStage) and s.transform])
        model = seeded_init(model_factory, seed).to(device)
        loop = self.loop_stage
        if loop is not None and loop.train is not None:
            model = loop.train(
                model, data, config=self.config, seed=seed, device=device, batch_transform=transform, progress=progress
            )
        else:
            model = train_model(
                model, data, config=self.config, seed=seed, device=device, batch_transform=transform, progress=progress
            )
        return self.finish_model(model, data, seed=seed, device=device, progress=progress)

    def prepare_data(
        self,
        model_factory: Callable[[], nn.Module],
        data: TensorData,
        *,
        seed: int,
        device: torch.device,
        progress: Progress,
    ) -> TensorData:
        """The training data after every data stage, in stack order (the first step of :meth:`train`)."""
        for stage in self.stages:
            if isinstance(stage, DataStage) and stage.apply is not None:
                data = stage.apply(model_factory, data, config=self.config, seed=seed, device=device, progress=progress)
        return data

    def finish_model(
        self, model: nn.Module, data: TensorData, *, seed: int, device: torch.device, progress: Progress
    ) -> nn.Module:
        """``model`` after every post stage (the last step of :meth:`train`), in eval mode.

        Args:
            model: The trained model.
            data: The data it trained on (what :meth:`prepare_data` returned).
            seed: The training seed.
            device: Torch device.
            progress: Progress reporter.
        """
        for stage in self.stages:
            if isinstance(stage, PostStage) and stage.apply is not None:
                model = stage.apply(model, data, config=self.config, seed=seed, device=device, progress=progress)
        return model.eval()

    def __repr__(self) -> str:
        return f"Recipe(name={self.name!r}, config={self.config!r})"
