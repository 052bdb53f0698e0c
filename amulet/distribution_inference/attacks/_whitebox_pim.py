"""White-box permutation-invariant meta-classifier (Ganju et al., CCS 2018) for distribution inference."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amulet._validation import Interval, validate_params
from amulet.distribution_inference.attacks._base import DistributionInferenceAttack
from amulet.exceptions import NotApplicableError
from amulet.progress import Progress
from amulet.recipes import Recipe
from amulet.utils import derive_seed, seeded_init

__all__ = ["PermutationInvariantMetaClassifier", "WhiteBoxPIM", "linear_layer_weights"]


@dataclass(frozen=True)
class _PositiveInts:
    """A non-empty list of positive ints (hidden sizes)."""

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) > 0
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        )

    def describe(self) -> str:
        return "a non-empty list of positive ints"


def linear_layer_weights(model: nn.Module) -> list[torch.Tensor]:
    """Per ``nn.Linear`` / ``nn.Conv2d`` layer, in order, one row per neuron: ``[W | b]`` of shape
    ``(out, in + 1)`` (a convolution's kernel flattened to ``in * kh * kw`` columns; no bias column without a bias).

    ``nn.DataParallel`` / ``DistributedDataParallel`` wrappers are unwrapped, as upstream does.
    """
    inner = getattr(model, "module", None)
    base: nn.Module = inner if isinstance(inner, nn.Module) else model
    out = []
    for module in base.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            w = module.weight.detach().float().cpu().reshape(module.weight.shape[0], -1)
            if module.bias is not None:
                w = torch.cat([w, module.bias.detach().float().cpu()[:, None]], dim=1)
            out.append(w)
    return out


class PermutationInvariantMetaClassifier(nn.Module):
    """Ganju et al.'s meta-classifier: per layer, a shared MLP embeds every neuron's incoming weights (and the
    previous layer's embedding); embeddings are summed over the neurons (invariant to their order) and the
    layer summaries are concatenated into a logit.

    Args:
        layer_widths: Input width (``in + 1``) of each linear layer.
        inside_dims: Hidden sizes of each per-layer MLP; the last one is the embedding size.
    """

    def __init__(self, layer_widths: Sequence[int], inside_dims: Sequence[int] = (64, 8)) -> None:
        super().__init__()
        self.embed_dim = int(inside_dims[-1])
        self.phis = nn.ModuleList()
        for i, width in enumerate(layer_widths):
            layers: list[nn.Module] = []
            prev = width + (self.embed_dim if i > 0 else 0)
            for d in inside_dims:
                layers += [nn.Linear(prev, d), nn.ReLU()]
                prev = d
            self.phis.append(nn.Sequential(*layers))
        self.rho = nn.Linear(self.embed_dim * len(layer_widths), 1)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """``layers[l]``: ``(batch, neurons_l, in_l + 1)``; returns ``(batch,)`` logits."""
        summaries, previous = [], None
        for phi, w in zip(self.phis, layers):
            if previous is not None:
                w = torch.cat([w, previous[:, None, :].expand(-1, w.shape[1], -1)], dim=-1)
            summary = phi(w).sum(dim=1)
            summaries.append(summary)
            previous = summary
        return self.rho(torch.cat(summaries, dim=-1)).squeeze(-1)


class WhiteBoxPIM(DistributionInferenceAttack):
    """White-box distribution inference: a permutation-invariant meta-classifier trained on the adversary's
    populations (label 0 = ratio1, 1 = ratio2) and applied to the target models' weights.

    The meta-classifier is trained in up to 5 stratified folds over the adversary's models; the decision
    threshold is chosen on the adversary's models' out-of-fold scores (:func:`adversary_threshold`), and the
    targets are scored by the mean of the fold meta-classifiers (``meta_classifiers_``). Target models never
    influence the threshold (upstream trains one meta-classifier and cuts its sigmoid at 0.5).

    Every ``nn.Linear`` and ``nn.Conv2d`` layer is read (one row per neuron or output channel, as upstream).
    With ``models_dir``, the populations are the checkpoints an earlier run (of this attack or of
    :class:`SuriEvans2022`) left there under the same names, so they are loaded, not retrained.

    Reference:
        K. Ganju et al. Property Inference Attacks on Fully Connected Neural Networks using Permutation
        Invariant Representations. CCS 2018; used as in A. Suri, D. Evans, PETS 2022.

    Args:
        (the arguments of :class:`DistributionInferenceAttack`, in its order), then
        meta_epochs (int): Full-batch training steps of the meta-classifier. Default 100.
        lr (float): Its Adam learning rate. Default 0.01.
        inside_dims (list[int] | None): Hidden sizes of the per-layer MLPs (default [64, 8]).
        random_seed (int | None): Seed of the meta-classifier (default: derived from ``seed``).
        recipe, model_factory, num_target_models, seed, progress: Keyword-only, as for
            :class:`DistributionInferenceAttack`.
    """

    _parameter_constraints = {
        **DistributionInferenceAttack._parameter_constraints,
        "meta_epochs": [Interval(int, 1, None)],
        "lr": [Interval(float, 0, None, closed="neither")],
        "random_seed": [Interval(int, 0, None), None],
        "inside_dims": [_PositiveInts(), None],
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
        meta_epochs: int = 100,
        lr: float = 1e-2,
        inside_dims: list[int] | None = None,
        random_seed: int | None = None,
        *,
        recipe: Recipe | None = None,
        model_factory: Callable[[], nn.Module] | None = None,
        num_target_models: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        # set before the base constructor, which validates every constrained parameter
        self.meta_epochs = meta_epochs
        self.lr = lr
        self.inside_dims = inside_dims
        self.random_seed = random_seed
        super().__init__(
            x_train, y_train, z_train, x_test, y_test, z_test, sensitive_columns, filter_column, ratio1, ratio2,
            model_arch, model_capacity, num_features, num_classes, num_models, epochs, batch_size, device,
            models_dir, dataset, exp_id, filter_value, drop_values, train_subsample, test_subsample, recipe=recipe,
            model_factory=model_factory, num_target_models=num_target_models, seed=seed, progress=progress,
        )  # fmt: skip

    @staticmethod
    def _stack(models: list[nn.Module]) -> list[torch.Tensor]:
        per_model = [linear_layer_weights(m) for m in models]
        if not per_model[0]:
            raise NotApplicableError(
                "WhiteBoxPIM reads nn.Linear and nn.Conv2d layers (no Linear or Conv2d layers in this architecture)."
            )
        return [torch.stack([layers[i] for layers in per_model]) for i in range(len(per_model[0]))]

    def attack(  # type: ignore[override]
        self,
        *,
        models_adv_1: list[nn.Module] | None = None,
        models_adv_2: list[nn.Module] | None = None,
        models_target_1: list[nn.Module] | None = None,
        models_target_2: list[nn.Module] | None = None,
    ) -> dict[str, np.ndarray]:
        """Train the meta-classifier on the adversary's models and score the target models.

        Populations default to the prepared ones (:meth:`prepare_model_populations`).

        Returns:
            ``{"predictions": calibrated scores in [0, 1] (>= 0.5: distribution 2), "ground_truth": 0/1,
            "raw_scores": the mean fold meta-classifier logit of distribution 2, "threshold": the cut on
            those chosen on the adversary's held-out (out-of-fold) scores, "adversary_accuracy", "one_sided":
            True when every target falls on the same side of that cut (the accuracy then means nothing; a
            warning is logged)}``.
        """
        validate_params(self)
        pops = self._populations(
            models_adv_1=models_adv_1,
            models_adv_2=models_adv_2,
            models_target_1=models_target_1,
            models_target_2=models_target_2,
        )
        train_layers = self._stack(pops["models_adv_1"] + pops["models_adv_2"])
        test_layers = self._stack(pops["models_target_1"] + pops["models_target_2"])
        # standardise each layer with the adversary's statistics
        stats = [(w.mean(), w.std().clamp_min(1e-8)) for w in train_layers]
        train_layers = [(w - m) / s for w, (m, s) in zip(train_layers, stats)]
        test_layers = [(w - m) / s for w, (m, s) in zip(test_layers, stats)]
        labels = torch.cat([torch.zeros(len(pops["models_adv_1"])), torch.ones(len(pops["models_adv_2"]))])
        seed = self.random_seed if self.random_seed is not None else derive_seed(self._seed, "pim")
        widths = [w.shape[-1] for w in train_layers]
        dims = list(self.inside_dims or [64, 8])
        # k-fold over the adversary's models: every adversary model is scored by a meta-classifier that did
        # not train on it, and the decision threshold is chosen on those held-out scores (a meta-classifier's
        # scores of its own training models are overfitted and say nothing about where to cut). The targets
        # are scored by the mean of the fold meta-classifiers, the same ones that produced the held-out scores.
        # Scores are logits: a fold's sigmoid saturates at 0 or 1 on its held-out models, and a mean of
        # probabilities would not be on the scale the threshold was chosen on.
        folds = _stratified_folds(labels.numpy(), seed)
        held_out = np.full(len(labels), np.nan)
        target_scores = []
        training = torch.ones(len(folds), len(labels), dtype=torch.bool)
        for k, test_idx in enumerate(folds):
            training[k, torch.as_tensor(test_idx, dtype=torch.long)] = False
        seeds = [derive_seed(seed, "fold", k) for k in range(len(folds))]
        self.meta_classifiers_ = self._train_metas(train_layers, labels, training, widths, dims, seeds)
        for meta, test_idx in zip(self.meta_classifiers_, folds):
            with torch.no_grad():
                if len(test_idx):
                    held_out[test_idx] = meta([w[test_idx] for w in train_layers]).double().numpy()
                target_scores.append(meta(test_layers).double().numpy())
        self.meta_classifier_ = self.meta_classifiers_[0]
        scores = np.mean(target_scores, axis=0)
        truth = np.r_[np.zeros(len(pops["models_target_1"])), np.ones(len(pops["models_target_2"]))]
        return self._decide(scores, truth, held_out, labels.numpy())

    def _train_metas(
        self,
        layers: list[torch.Tensor],
        labels: torch.Tensor,
        training: torch.Tensor,
        widths: list[int],
        dims: list[int],
        seeds: list[int],
    ) -> list[PermutationInvariantMetaClassifier]:
        """One meta-classifier per fold, all trained at once, full-batch with Adam (label 1: distribution 2).

        Fold ``f``'s meta-classifier starts from ``seeded_init(..., seeds[f])`` and minimises the mean loss over
        the models where ``training[f]`` is True, exactly as when trained alone: the folds' parameters are
        stacked and their forward passes batched with ``torch.func.vmap``, every model is scored by every fold
        but each fold's loss weighs only its own training models, and Adam is elementwise, so a fold's update
        depends only on its own gradient. One step for all folds replaces one per fold.
        """
        metas = [seeded_init(lambda: PermutationInvariantMetaClassifier(widths, dims), s) for s in seeds]
        params, buffers = torch.func.stack_module_state(metas)  # type: ignore[arg-type]
        skeleton = copy.deepcopy(metas[0]).to("meta")

        def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.func.functional_call(skeleton, (p, b), (layers,))

        scores = torch.func.vmap(forward)
        optimizer = torch.optim.Adam(list(params.values()), lr=self.lr)
        weights = training.float() / training.sum(dim=1, keepdim=True).clamp_min(1)
        targets = labels.float().expand(len(metas), -1)
        for _ in range(self.meta_epochs):
            optimizer.zero_grad()
            losses = nn.functional.binary_cross_entropy_with_logits(scores(params, buffers), targets, reduction="none")
            (losses * weights).sum().backward()
            optimizer.step()
        for f, meta in enumerate(metas):
            with torch.no_grad():
                for name, tensor in meta.named_parameters():
                    tensor.copy_(params[name][f])
            meta.eval()
        return metas


def _stratified_folds(labels: np.ndarray, seed: int, max_folds: int = 5) -> list[np.ndarray]:
    """Up to ``max_folds`` seeded folds, each holding models of both labels; one empty fold when a label has
    fewer than 2 models (nothing can be held out then)."""
    per_label = [np.flatnonzero(labels == v) for v in (0, 1)]
    n_folds = min(max_folds, *(len(p) for p in per_label))
    if n_folds < 2:
        return [np.array([], dtype=np.int64)]
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for rows in per_label:
        for i, row in enumerate(rng.permutation(rows)):
            folds[i % n_folds].append(int(row))
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]
