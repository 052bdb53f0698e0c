"""Black-box KL-divergence distinguishing test (Suri & Evans, 2022; Suri et al., 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.distribution_inference.attacks._base import DistributionInferenceAttack, _tensor_data
from amulet.exceptions import NotRunError
from amulet.utils import population_logits

__all__ = ["SuriEvans2022", "adversary_vote_scores", "kl_vote_scores"]


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def _selected_points(adv_1: torch.Tensor, adv_2: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """The query points on which the two adversary populations disagree most (mean |log-prob difference|)."""
    gap = (_log_probs(adv_1).mean(0) - _log_probs(adv_2).mean(0)).abs().sum(-1)
    n_keep = max(1, round(keep_fraction * gap.numel()))
    return torch.argsort(gap, descending=True)[:n_keep]


def _kl_to(reference_log: torch.Tensor, models_log: torch.Tensor) -> torch.Tensor:
    """Mean over points of KL(reference model || model), shape ``(n_models, n_reference)``."""
    p = reference_log.exp()
    n_points = reference_log.shape[1]
    return (
        torch.einsum("apc,apc->a", p, reference_log)[None, :] / n_points
        - torch.einsum("apc,vpc->va", p, models_log) / n_points
    )


def _votes(
    kl_a: torch.Tensor, kl_b: torch.Tensor, valid_a: torch.Tensor | None = None, valid_b: torch.Tensor | None = None
) -> np.ndarray:
    """Share of the (adv-1, adv-2) pairs, among the valid ones, for which a model is closer to the adv-2 model."""
    votes = (kl_a[:, :, None] > kl_b[:, None, :]).double()
    if valid_a is None or valid_b is None:
        return votes.mean(dim=(1, 2)).numpy()
    valid = (valid_a[:, :, None] & valid_b[:, None, :]).double()
    counts = valid.sum(dim=(1, 2))
    shares = (votes * valid).sum(dim=(1, 2)) / counts.clamp_min(1.0)
    return torch.where(counts > 0, shares, torch.full_like(shares, float("nan"))).numpy()


def kl_vote_scores(
    adv_1: torch.Tensor, adv_2: torch.Tensor, targets: torch.Tensor, *, keep_fraction: float = 0.5
) -> np.ndarray:
    """Pairwise KL votes: for each target, the share of (adv-1 model, adv-2 model) pairs it is closer to adv-2.

    Args:
        adv_1, adv_2: Logits ``(n_models, n_points, n_classes)`` of the adversary populations.
        targets: Logits ``(n_targets, n_points, n_classes)``.
        keep_fraction: Only the points on which the two adversary populations disagree most (mean absolute
            difference of log-probabilities) are used; this fraction of them.

    Returns:
        ``(n_targets,)`` raw scores in [0, 1]; higher means "closer to distribution 2". They are not centred:
        :func:`adversary_vote_scores` gives the adversary's own models' scores to choose the threshold on.
    """
    points = _selected_points(adv_1, adv_2, keep_fraction)
    la, lb, lv = (_log_probs(t)[:, points] for t in (adv_1, adv_2, targets))
    return _votes(_kl_to(la, lv), _kl_to(lb, lv))


def adversary_vote_scores(
    adv_1: torch.Tensor, adv_2: torch.Tensor, *, keep_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out KL votes of the adversary's own models, with their labels (0: adv-1, 1: adv-2).

    Each adversary model is scored like a target against every other adversary model (the pairs that
    involve the model itself are left out), on the same points as :func:`kl_vote_scores`. A model whose
    population has no other member gets NaN.
    """
    points = _selected_points(adv_1, adv_2, keep_fraction)
    la, lb = (_log_probs(t)[:, points] for t in (adv_1, adv_2))
    models = torch.cat([la, lb])
    n1, n2 = len(la), len(lb)
    eye = torch.eye(n1 + n2, dtype=torch.bool)
    valid_a, valid_b = ~eye[:, :n1], ~eye[:, n1:]
    scores = _votes(_kl_to(la, models), _kl_to(lb, models), valid_a, valid_b)
    return scores, np.r_[np.zeros(n1), np.ones(n2)]


class SuriEvans2022(DistributionInferenceAttack):
    """Black-box distribution inference by KL divergence to adversary populations.

    On query points drawn from both distributions, each target model's predictive distribution is compared
    (KL divergence, averaged over the points where the adversary's two populations disagree most) with every
    adversary model of distribution 1 and of distribution 2; the score is the share of (model-1, model-2)
    pairs for which the target is closer to the distribution-2 model.

    The decision threshold is chosen on the adversary's own models: each is scored the same way against
    the other adversary models (leave-one-out), and the threshold between their two groups of scores is mapped to
    0.5 (see :mod:`amulet.distribution_inference.attacks._threshold`). ``predictions`` are therefore
    calibrated scores whose 0.5 cut is the adversary's decision, and the vote shares themselves are in
    ``raw_scores``. Target models never influence the threshold. (Upstream min-max normalises the pairwise KL
    differences over all target models together and cuts at 0.5, so one target's decision depends on which
    other targets are scored; its binary KL reads only the first logit, where this reads every class.)

    Reference:
        A. Suri, D. Evans. Formalizing and Estimating Distribution Inference Risks. PETS 2022; the KL test of
        A. Suri et al. Dissecting Distribution Inference. SaTML 2023.

    Takes the arguments of :class:`DistributionInferenceAttack`.
    """

    def attack(  # type: ignore[override]
        self,
        *,
        models_adv_1: list[nn.Module] | None = None,
        models_adv_2: list[nn.Module] | None = None,
        models_target_1: list[nn.Module] | None = None,
        models_target_2: list[nn.Module] | None = None,
        test_loader_1: DataLoader | None = None,
        test_loader_2: DataLoader | None = None,
    ) -> dict[str, np.ndarray]:
        """Score the target models; populations and loaders default to the prepared ones.

        Args:
            models_adv_1, models_adv_2: Adversary models trained on distribution 1 / 2.
            models_target_1, models_target_2: Target models trained on distribution 1 / 2 (the ones scored).
            test_loader_1, test_loader_2: Query rows at ratio 1 / 2; batches ``(x, y)`` or ``(x, y, z)``.

        Returns:
            ``{"predictions": (n_1 + n_2,) calibrated scores in [0, 1] (>= 0.5: distribution 2),
            "ground_truth": 0 for target_1, 1 for target_2, "raw_scores": the vote shares, "threshold": the
            adversary's threshold on the vote shares (a 0-d array), "adversary_accuracy": the accuracy of
            that threshold on the adversary's own models (leave-one-out), "adversary_scores",
            "adversary_labels", "one_sided": True when every target falls on the same side of the threshold
            (the accuracy is then the share of one population whatever the scores; a warning is logged)}``.

        Raises:
            RuntimeError: (:class:`~amulet.exceptions.NotRunError`) no populations or loaders given and
                :meth:`prepare_model_populations` not called.
        """
        pops = self._populations(
            models_adv_1=models_adv_1,
            models_adv_2=models_adv_2,
            models_target_1=models_target_1,
            models_target_2=models_target_2,
        )
        if test_loader_1 is None or test_loader_2 is None:
            if self.splits is None:
                raise NotRunError(
                    "SuriEvans2022 needs query loaders: pass test_loader_1/test_loader_2 or call "
                    "prepare_model_populations() first."
                )
            test_loader_1 = test_loader_1 or self.splits.test_loader_1
            test_loader_2 = test_loader_2 or self.splits.test_loader_2
        x = torch.cat([_tensor_data(test_loader_1.dataset).x, _tensor_data(test_loader_2.dataset).x])
        device = torch.device(self.device)

        def logits(models: list[Any]) -> torch.Tensor:
            return population_logits(models, x, device=device)

        adv_1, adv_2 = logits(pops["models_adv_1"]), logits(pops["models_adv_2"])
        targets = [pops["models_target_1"], pops["models_target_2"]]
        scores = kl_vote_scores(adv_1, adv_2, torch.cat([logits(targets[0]), logits(targets[1])]))
        adv_scores, adv_labels = adversary_vote_scores(adv_1, adv_2)
        truth = np.r_[np.zeros(len(targets[0])), np.ones(len(targets[1]))]
        return self._decide(scores, truth, adv_scores, adv_labels)
