"""Dataset inference by MinGD prediction margins (Maini et al., ICLR 2021).

The test can only find what the target itself shows: its private (training) inputs must sit measurably farther
from its decision boundary than public inputs. A model that generalises well (census with a few epochs: the
private/public score gap is a few hundredths of a standard deviation) gives no such signal, and then a large
p-value for a suspect says nothing about it. Every result therefore carries a power analysis of the target's
own held-out test (the positive control), and says ``underpowered`` with the reason when the setup cannot
resolve ownership.

The MinGD distances are :mod:`._mingd`'s and the test's statistics (power, samples needed) are
:mod:`._ownership_power`'s; ``mingd_distances`` and ``welch_power`` stay importable from here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.stats import ttest_ind
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, validate_params
from amulet.progress import Progress, resolve_progress
from amulet.unauth_model_ownership.defenses._base import FingerprintDefense
from amulet.unauth_model_ownership.defenses._mingd import NORMS, mingd_distances
from amulet.unauth_model_ownership.defenses._ownership_power import (
    ALPHA,
    TARGET_POWER,
    effect_size,
    samples_needed,
    welch_power,
)
from amulet.utils import layer1_threads, loader_batches, make_generator, seeded_init

__all__ = ["DatasetInference", "mingd_distances", "welch_power"]

logger = logging.getLogger(__name__)


class DatasetInference(FingerprintDefense):
    """Dataset inference: does the suspect model carry knowledge of the target's private training set?

    For ``num_samples`` private (``train_loader``) and public (``test_loader``) inputs, MinGD distances to
    every class under L-inf, L2 and L1 are the features of each model (sorted over classes, normalised by
    the target's private-feature statistics). A regressor is trained on the target's features of half of the
    samples (a seeded random half) to score public inputs high and private ones low; on the other half, a
    one-sided Welch t-test (SciPy) asks whether a model's public scores exceed its private scores. A small
    p-value for the suspect means it was derived from the target (or its data).

    The target's own held-out test is the positive control: if it is not significant, or its effect size gives
    the test less than 80 % power at the held-out sample size, the result is marked ``underpowered`` with the
    reason and the samples that would be needed, and a large suspect p-value must be read as "inconclusive",
    not as "independent". Dataset inference needs a target that fits its private data measurably better than
    public data (Maini et al. study over-parameterised image models); a well-generalising model leaves nothing
    to detect.

    Reference:
        Dataset Inference: Ownership Resolution in Machine Learning. Pratyush Maini, Mohammad Yaghini,
        Nicolas Papernot. ICLR 2021. https://arxiv.org/abs/2104.10706

    Args:
        target_model: The owner's model.
        suspect_model: The model suspected of being stolen.
        train_loader: The owner's private training data (unshuffled for reproducible results).
        test_loader: Public data from the same distribution.
        num_classes: Number of classes.
        device: Torch device.
        dataset: ``"1D"`` (tabular, unbounded features) or ``"2D"`` (images in [0, 1]).
        alpha_l1: L1 step size (divided by ``k``), default 1.0.
        alpha_l2: L2 step size, default 0.01.
        alpha_linf: L-inf step size, default 0.001.
        k: Coordinates moved per L1 step, default 1.0 (rounded to an int >= 1).
        gap: L1 distance to a bound within which a coordinate is not pushed further, default 0.001.
        num_iter: Maximum MinGD steps, default 500.
        regressor_embed: 0 uses the first ``num_samples`` rows of each loader; 1 skips them and uses the
            next ``num_samples`` (a distinct set, as in Maini et al.'s ``regressor_embed``).
        batch_size: Inputs per MinGD batch (each expands to ``num_classes`` rows), default 256.
        num_samples: Private and public inputs used (each, at most what the loaders hold), default 1000; half
            train the regressor, half are tested. With 500 tested per group the test has 80 % power for an
            effect of about 0.16 standard deviations; 50 per group (upstream's 100) only for about 0.5.
        regressor_epochs: Full-batch SGD steps of the regressor, default 500.
        seed: Seed of the regressor's initialisation and sample order, default 0.
        progress: Progress reporter (task ``"dataset_inference"``).

    Attributes:
        results_: The dictionary :meth:`fingerprint` returned.
        power_: Its ``"power"`` entry (see :meth:`fingerprint`).

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "suspect_model": [InstanceOf(nn.Module)],
        "train_loader": [InstanceOf(DataLoader)],
        "test_loader": [InstanceOf(DataLoader)],
        "num_classes": [Interval(int, 2, None)],
        "device": [InstanceOf((str, torch.device))],
        "dataset": [Options({"1D", "2D"})],
        "alpha_l1": [Interval(float, 0, None, closed="neither")],
        "alpha_l2": [Interval(float, 0, None, closed="neither")],
        "alpha_linf": [Interval(float, 0, None, closed="neither")],
        "k": [Interval(float, 1, None)],
        "gap": [Interval(float, 0, None)],
        "num_iter": [Interval(int, 1, None)],
        "regressor_embed": [Options({0, 1})],
        "batch_size": [Interval(int, 1, None)],
        "num_samples": [Interval(int, 4, None)],
        "regressor_epochs": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        target_model: nn.Module,
        suspect_model: nn.Module,
        train_loader: DataLoader,
        test_loader: DataLoader,
        num_classes: int,
        device: str | torch.device,
        dataset: str,
        alpha_l1: float = 1.0,
        alpha_l2: float = 0.01,
        alpha_linf: float = 0.001,
        k: float = 1.0,
        gap: float = 0.001,
        num_iter: int = 500,
        regressor_embed: int = 0,
        batch_size: int = 256,
        *,
        num_samples: int = 1000,
        regressor_epochs: int = 500,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.target_model = target_model
        self.suspect_model = suspect_model
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.num_classes = num_classes
        self.device = device
        self.dataset = dataset
        self.alpha_l1 = alpha_l1
        self.alpha_l2 = alpha_l2
        self.alpha_linf = alpha_linf
        self.k = k
        self.gap = gap
        self.num_iter = num_iter
        self.regressor_embed = regressor_embed
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.regressor_epochs = regressor_epochs
        self.seed = seed
        self.progress = progress
        validate_params(self)

    def _samples(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inputs used from ``loader`` and their labels (None when the loader yields no labels)."""
        skip = self.num_samples if self.regressor_embed == 1 else 0
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] | None = []
        seen = 0
        for batch in loader_batches(loader):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            y = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
            lo = max(0, skip - seen)
            seen += len(x)
            if lo < len(x):
                xs.append(x[lo:].float())
                if ys is not None and y is not None:
                    ys.append(y[lo:].long().reshape(-1))
                else:
                    ys = None
            if sum(len(t) for t in xs) >= self.num_samples:
                break
        x_all = torch.cat(xs)[: self.num_samples] if xs else torch.empty(0)
        if len(x_all) < 4:
            raise ValueError(f"DatasetInference needs at least 4 inputs from each loader; got {len(x_all)}.")
        y_all = torch.cat(ys)[: self.num_samples] if ys else None
        if y_all is not None and not bool(((y_all >= 0) & (y_all < self.num_classes)).all()):
            y_all = None  # not class labels of this model: fall back to label-free embeddings
        return x_all, y_all

    @staticmethod
    def _power(target: dict[str, float], n_per_group: int) -> dict[str, Any]:
        """The power analysis of the target's own held-out test (the positive control)."""
        d = float(target["effect_size"])
        power = welch_power(d, n_per_group)
        needed = samples_needed(d)
        reason = None
        if target["p-value"] >= ALPHA or power < TARGET_POWER:
            need = (
                "the target shows no private/public gap to detect at all (its training data is not special to it)"
                if needed is None
                else f"about {needed} held-out inputs per group (num_samples ~ {2 * needed}) would be needed"
            )
            reason = (
                f"the target's own test gives p = {target['p-value']:.3g} and an effect of {d:.3f} standard "
                f"deviations between public and private scores; with {n_per_group} held-out inputs per group the "
                f"test has {100 * power:.0f}% power at alpha {ALPHA} (needs {100 * TARGET_POWER:.0f}%); {need}. "
                "A suspect's large p-value is inconclusive here, not evidence of independence; a model that "
                "overfits its private data less leaves less to detect, a copy usually even less than the target."
            )
        return {
            "n_per_group": int(n_per_group),
            "alpha": ALPHA,
            "target_power": power,
            "samples_needed": needed,
            "underpowered": reason is not None,
            "reason": reason,
        }

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """MinGD distances of ``model`` on ``x``: shape (n, num_classes, 3), norms in the order L-inf, L2, L1."""
        device = torch.device(self.device)
        model.to(device)
        k = max(1, round(float(self.k)))
        bounds = (0.0, 1.0) if self.dataset == "2D" else None
        alphas = {"linf": float(self.alpha_linf), "l2": float(self.alpha_l2), "l1": float(self.alpha_l1) / k}
        out = []
        for start in range(0, len(x), self.batch_size):
            xb = x[start : start + self.batch_size].to(device)
            per_norm = [
                mingd_distances(
                    model,
                    xb,
                    self.num_classes,
                    norm=norm,
                    alpha=alphas[norm],
                    num_iter=self.num_iter,
                    k=k,
                    gap=float(self.gap),
                    bounds=bounds,
                )
                for norm in NORMS
            ]
            out.append(torch.stack(per_norm, dim=-1).cpu())
        return torch.cat(out)

    def fingerprint(self) -> dict[str, Any]:
        """Run dataset inference on the target (sanity check) and on the suspect.

        Returns:
            ``{"target": {"p-value", "mean_diff", "effect_size"}, "suspect": {...}, "power": {...}}``.
            ``mean_diff`` is the regressor's mean score on public minus private held-out inputs and
            ``effect_size`` that difference in pooled standard deviations (Cohen's d). ``"power"`` holds
            ``n_per_group`` (held-out inputs per group), ``alpha`` (0.05), ``target_power`` (power of the test
            at the target's own effect size), ``samples_needed`` (per group for 80 % power at that effect, None
            when the target shows none), ``underpowered`` (bool) and ``reason`` (None unless underpowered).
            The target's effect bounds what a copy can show: a stolen model usually shows less.
        """
        validate_params(self)
        with layer1_threads(self.target_model):
            return self._fingerprint()

    def _fingerprint(self) -> dict[str, Any]:
        progress = resolve_progress(self.progress)
        progress.start("dataset_inference", 4, "dataset inference")
        private, y_private = self._samples(self.train_loader)
        public, y_public = self._samples(self.test_loader)
        n = min(len(private), len(public))
        private, public = private[:n], public[:n]
        labels: tuple[torch.Tensor, torch.Tensor] | None = None
        if y_private is not None and y_public is not None:
            labels = (y_private[:n], y_public[:n])
        feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, model in (("target", self.target_model), ("suspect", self.suspect_model)):
            f_private = self.features(model, private)
            progress.advance("dataset_inference")
            f_public = self.features(model, public)
            progress.advance("dataset_inference")
            feats[name] = (f_private, f_public)

        mean = feats["target"][0].mean(dim=(0, 1))
        std = feats["target"][0].std(dim=(0, 1)).clamp_min(1e-12)

        def prepare(f: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            # With labels: the distance to the true class first (0 when the model is right, the distance that
            # would make it right otherwise), then the other classes sorted. Without labels the signal is
            # only "far from every boundary"; a model that fits its private data is right on it more often,
            # with wider margins, and the label-ordered embedding keeps that.
            if y is None:
                f = f.sort(dim=1).values
            else:
                rows = torch.arange(len(f))
                others = torch.ones(f.shape[:2], dtype=torch.bool)
                others[rows, y] = False
                rest = f[others].reshape(len(f), f.shape[1] - 1, f.shape[2]).sort(dim=1).values
                f = torch.cat([f[rows, y].unsqueeze(1), rest], dim=1)
            f = (f - mean) / std
            return f.permute(0, 2, 1).reshape(len(f), -1)  # per norm, the class distances

        split = n // 2
        order = torch.randperm(n, generator=make_generator(self.seed))
        fit_idx, eval_idx = order[:split], order[split:]
        y_priv, y_pub = labels if labels is not None else (None, None)
        t_private, t_public = prepare(feats["target"][0], y_priv), prepare(feats["target"][1], y_pub)
        x_fit = torch.cat([t_private[fit_idx], t_public[fit_idx]])
        y_fit = torch.cat([torch.zeros(split), torch.ones(split)])
        width = x_fit.shape[1]
        regressor = seeded_init(
            lambda: nn.Sequential(nn.Linear(width, 100), nn.ReLU(), nn.Linear(100, 1), nn.Tanh()), self.seed
        )
        optimizer = torch.optim.SGD(regressor.parameters(), lr=0.1)
        for _ in range(self.regressor_epochs):
            optimizer.zero_grad()
            loss = -((2 * y_fit - 1) * regressor(x_fit).squeeze(-1)).mean()
            loss.backward()
            optimizer.step()

        results: dict[str, Any] = {}
        with torch.no_grad():
            for name, (f_private, f_public) in feats.items():
                s_private = regressor(prepare(f_private, y_priv)[eval_idx]).squeeze(-1).numpy().astype(np.float64)
                s_public = regressor(prepare(f_public, y_pub)[eval_idx]).squeeze(-1).numpy().astype(np.float64)
                if np.allclose(s_public, s_private) or (s_public.std() == 0 and s_private.std() == 0):
                    p_value = 1.0
                else:
                    p_value = float(ttest_ind(s_public, s_private, alternative="greater", equal_var=False).pvalue)
                results[name] = {
                    "p-value": p_value,
                    "mean_diff": float(s_public.mean() - s_private.mean()),
                    "effect_size": effect_size(s_public, s_private),
                }
        results["power"] = self._power(results["target"], len(eval_idx))
        if results["power"]["underpowered"]:
            logger.warning("DatasetInference is underpowered: %s", results["power"]["reason"])
        self.results_ = results
        self.power_ = results["power"]
        progress.finish("dataset_inference")
        return results
