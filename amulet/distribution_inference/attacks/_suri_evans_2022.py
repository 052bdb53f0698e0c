"""Black-box KL-divergence distinguishing test (Suri & Evans, 2022; Suri et al., 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet.distribution_inference.attacks._base import DistributionInferenceAttack
from amulet.exceptions import NotRunError
from amulet.utils._population import population_logits
from amulet.utils._tensordata import TensorData

__all__ = ["SuriEvans2022", "kl_vote_scores"]


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def kl_vote_scores(
    adv_1: torch.Tensor, adv_2: torch.Tensor, victims: torch.Tensor, *, keep_fraction: float = 0.5
) -> np.ndarray:
    """Pairwise KL votes: for each victim, the share of (adv-1 model, adv-2 model) pairs it is closer to adv-2.

    Args:
        adv_1, adv_2: Logits ``(n_models, n_points, n_classes)`` of the adversary populations.
        victims: Logits ``(n_victims, n_points, n_classes)``.
        keep_fraction: Only the points on which the two adversary populations disagree most (mean absolute
            difference of log-probabilities) are used; this fraction of them.

    Returns:
        ``(n_victims,)`` scores in [0, 1]; above 0.5 means "closer to distribution 2".
    """
    la, lb, lv = _log_probs(adv_1), _log_probs(adv_2), _log_probs(victims)
    gap = (la.mean(0) - lb.mean(0)).abs().sum(-1)
    n_keep = max(1, round(keep_fraction * gap.numel()))
    points = torch.argsort(gap, descending=True)[:n_keep]
    la, lb, lv = la[:, points], lb[:, points], lv[:, points]

    def kl(p_log: torch.Tensor) -> torch.Tensor:
        # mean over points of KL(adversary model || victim), shape (n_victims, n_adv)
        p = p_log.exp()
        return (
            torch.einsum("apc,apc->a", p, p_log)[None, :] / p_log.shape[1]
            - torch.einsum("apc,vpc->va", p, lv) / p_log.shape[1]
        )

    kl_a, kl_b = kl(la), kl(lb)
    votes = (kl_a[:, :, None] > kl_b[:, None, :]).double()  # victim closer to the adv-2 model than the adv-1 model
    return votes.mean(dim=(1, 2)).numpy()


class SuriEvans2022(DistributionInferenceAttack):
    """Black-box distribution inference by KL divergence to adversary populations.

    On query points drawn from both distributions, each victim model's predictive distribution is compared
    (KL divergence, averaged over the points where the adversary's two populations disagree most) with every
    adversary model of distribution 1 and of distribution 2; the score is the share of (model-1, model-2)
    pairs for which the victim is closer to the distribution-2 model.

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
        """Score the victim (target) models; populations and loaders default to the prepared ones.

        Returns:
            ``{"predictions": (n_1 + n_2,) scores in [0, 1], "ground_truth": 0 for target_1, 1 for target_2}``.
        """
        pops = self._populations(
            models_adv_1=models_adv_1,
            models_adv_2=models_adv_2,
            models_target_1=models_target_1,
            models_target_2=models_target_2,
        )
        if test_loader_1 is None or test_loader_2 is None:
            if not hasattr(self, "splits"):
                raise NotRunError("SuriEvans2022 needs query loaders; call prepare_model_populations() first.")
            test_loader_1 = test_loader_1 or self.splits.test_loader_1
            test_loader_2 = test_loader_2 or self.splits.test_loader_2
        x = torch.cat(
            [TensorData.from_dataset(test_loader_1.dataset).x, TensorData.from_dataset(test_loader_2.dataset).x]
        )
        device = torch.device(self.device)

        def logits(models: list[Any]) -> torch.Tensor:
            return population_logits(models, x, device=device)

        adv_1, adv_2 = logits(pops["models_adv_1"]), logits(pops["models_adv_2"])
        victims = [pops["models_target_1"], pops["models_target_2"]]
        scores = kl_vote_scores(adv_1, adv_2, torch.cat([logits(victims[0]), logits(victims[1])]))
        truth = np.r_[np.zeros(len(victims[0])), np.ones(len(victims[1]))]
        return {"predictions": scores, "ground_truth": truth}
