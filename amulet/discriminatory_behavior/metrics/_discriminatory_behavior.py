"""Subgroup fairness metrics of a binary classifier (risk F).

Definitions (for one sensitive attribute ``a``, predictions ``yhat`` and labels ``y`` in {0, 1}):

* selection rate of group ``g``: ``P(yhat = 1 | a = g)``;
* true positive rate of ``g``: ``P(yhat = 1 | y = 1, a = g)``; false positive rate of ``g``:
  ``P(yhat = 1 | y = 0, a = g)``. As in fairlearn (``true_positive_rate`` / ``false_positive_rate``, which
  normalise a confusion matrix and turn 0/0 into 0), a group with no positives has a true positive rate of 0
  and a group with no negatives a false positive rate of 0;
* demographic parity = the largest minus the smallest selection rate over the groups present (fairlearn's
  ``demographic_parity_difference``); true / false positive parity likewise over the TPRs / FPRs (fairlearn's
  ``MetricFrame(...).difference()``); equalized odds = true positive parity + false positive parity (the
  definition upstream Amulet uses; fairlearn's ``equalized_odds_difference`` takes their maximum instead);
* p%-rule = ``100 * min(r, 1/r)`` with ``r = P(yhat=1 | a=1) / P(yhat=1 | a=0)``, and 0 when ``r`` is
  undefined (a group is absent or both selection rates are 0).

For a binary attribute the "largest minus smallest" is exactly ``|rate(a=1) - rate(a=0)|``. A non-binary
attribute (e.g. race with several values) is accepted too: every metric then reports the *worst pairwise gap*
over all groups present (largest minus smallest rate), and the p%-rule the worst pairwise ratio, i.e.
``100 * min_rate / max_rate``. A group that does not occur contributes nothing; with fewer than two groups
present the gaps are 0 (as in fairlearn) and the p%-rule is 0 (undefined).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, validate_params
from amulet.exceptions import InvalidParameterError
from amulet.utils import loader_batches

__all__ = ["BINARY_MESSAGE", "LOADER_MESSAGE", "DiscriminatoryBehavior"]

#: Message for predictions or labels that are not binary.
BINARY_MESSAGE = "The {name!r} parameter of {owner} must contain only the values 0 and 1. Got values {values} instead."
#: Message for a loader that does not yield (x, y, z) batches.
LOADER_MESSAGE = (
    "The {name!r} parameter of {owner} must yield (x, y, z) batches with the sensitive attributes z. "
    "Got batches of {n} tensors instead."
)


def _as_1d(values: np.ndarray | torch.Tensor | list, name: str, owner: str, *, binary: bool) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values).reshape(-1)
    if binary:
        uniq = np.unique(arr)
        if not np.isin(uniq, (0, 1)).all():
            shown = uniq[:10].tolist()
            raise InvalidParameterError(BINARY_MESSAGE.format(name=name, owner=owner, values=shown))
        arr = arr.astype(np.int64)
    return arr


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _group_rates(mask_event: np.ndarray, condition: np.ndarray, attributes: np.ndarray) -> list[float]:
    """P(event | condition, a = g) for each group g present in ``attributes``; 0 when the condition is empty."""
    rates = []
    for g in np.unique(attributes):
        in_group = (attributes == g) & condition
        count = int(in_group.sum())
        rates.append(float(mask_event[in_group].sum()) / count if count else 0.0)
    return rates


def _gap(rates: list[float]) -> float:
    return float(max(rates) - min(rates)) if rates else 0.0


class DiscriminatoryBehavior:
    """Fairness metrics of ``model`` on ``test_loader`` for every sensitive attribute.

    Args:
        model: Binary classifier (two logits, class 1 = the favourable outcome).
        test_loader: Yields ``(x, y, z)`` batches; ``z`` has one column per sensitive attribute (or is 1-D
            for a single attribute). Any batch size works.
        device: Torch device used for inference.

    Attributes:
        metrics_: The result of the last :meth:`evaluate_subgroup_metrics` call.

    Example:
        >>> import numpy as np
        >>> pred = np.array([1, 0, 1, 1]); y = np.array([1, 0, 0, 1]); a = np.array([0, 0, 1, 1])
        >>> DiscriminatoryBehavior.demographic_parity(pred, a)
        0.5
        >>> DiscriminatoryBehavior.p_rule(pred, a)
        50.0
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "test_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
    }

    def __init__(self, model: nn.Module, test_loader: DataLoader, device: str | torch.device):
        self.model = model
        self.test_loader = test_loader
        self.device = device
        validate_params(self)

    # ------------------------------------------------------------------ static metrics
    @staticmethod
    def accuracy(predictions: np.ndarray, targets: np.ndarray, attributes: np.ndarray) -> tuple[float, float]:
        """Accuracy (percent) in the group ``a = 1`` and in the group ``a = 0`` (NaN for an absent group)."""
        pred = _as_1d(predictions, "predictions", "DiscriminatoryBehavior", binary=False)
        tgt = _as_1d(targets, "targets", "DiscriminatoryBehavior", binary=False)
        attr = _as_1d(attributes, "attributes", "DiscriminatoryBehavior", binary=False)
        out = []
        for g in (1, 0):
            mask = attr == g
            out.append(float((pred[mask] == tgt[mask]).mean() * 100) if mask.any() else float("nan"))
        return out[0], out[1]

    @staticmethod
    def demographic_parity(predictions: np.ndarray, attributes: np.ndarray) -> float:
        """``|P(yhat=1 | a=1) - P(yhat=1 | a=0)|``; for non-binary ``a`` the worst pairwise gap."""
        pred = _as_1d(predictions, "predictions", "DiscriminatoryBehavior", binary=True)
        attr = _as_1d(attributes, "attributes", "DiscriminatoryBehavior", binary=False)
        return _gap(_group_rates(pred == 1, np.ones_like(pred, dtype=bool), attr))

    @staticmethod
    def true_positive_parity(predictions: np.ndarray, targets: np.ndarray, attributes: np.ndarray) -> float:
        """``|TPR(a=1) - TPR(a=0)|`` (a group without positives has TPR 0); worst pairwise gap otherwise."""
        pred = _as_1d(predictions, "predictions", "DiscriminatoryBehavior", binary=True)
        tgt = _as_1d(targets, "targets", "DiscriminatoryBehavior", binary=True)
        attr = _as_1d(attributes, "attributes", "DiscriminatoryBehavior", binary=False)
        return _gap(_group_rates(pred == 1, tgt == 1, attr))

    @staticmethod
    def false_positive_parity(predictions: np.ndarray, targets: np.ndarray, attributes: np.ndarray) -> float:
        """``|FPR(a=1) - FPR(a=0)|`` (a group without negatives has FPR 0); worst pairwise gap otherwise."""
        pred = _as_1d(predictions, "predictions", "DiscriminatoryBehavior", binary=True)
        tgt = _as_1d(targets, "targets", "DiscriminatoryBehavior", binary=True)
        attr = _as_1d(attributes, "attributes", "DiscriminatoryBehavior", binary=False)
        return _gap(_group_rates(pred == 1, tgt == 0, attr))

    @staticmethod
    def equalized_odds(predictions: np.ndarray, targets: np.ndarray, attributes: np.ndarray) -> float:
        """True positive parity + false positive parity."""
        return DiscriminatoryBehavior.true_positive_parity(
            predictions, targets, attributes
        ) + DiscriminatoryBehavior.false_positive_parity(predictions, targets, attributes)

    @staticmethod
    def p_rule(predictions: np.ndarray, attributes: np.ndarray) -> float:
        """``100 * min(r, 1/r)`` with ``r`` the ratio of selection rates; 0 when undefined.

        For a non-binary attribute: ``100 * min_rate / max_rate`` over the groups present (the worst pair).
        """
        pred = _as_1d(predictions, "predictions", "DiscriminatoryBehavior", binary=True)
        attr = _as_1d(attributes, "attributes", "DiscriminatoryBehavior", binary=False)
        rates = _group_rates(pred == 1, np.ones_like(pred, dtype=bool), attr)
        if len(rates) < 2 or max(rates) <= 0.0:
            return 0.0
        return float(100.0 * min(rates) / max(rates))

    @staticmethod
    def adversary_auc(
        discriminator: nn.Module, main_model: nn.Module, test_loader: DataLoader, device: str | torch.device
    ) -> list[float]:
        """AUC of ``discriminator(main_model(x))`` at predicting each sensitive attribute.

        Unlike upstream (which tuned a threshold on the test data and scored the thresholded predictions),
        this is the threshold-free ROC AUC of the discriminator's scores (scikit-learn's ``roc_auc_score``);
        0.5 means the model's outputs reveal nothing about the attribute. An attribute with a single value
        in ``test_loader`` gets NaN.

        Args:
            discriminator: Maps the main model's outputs to one score per sensitive attribute (e.g.
                :attr:`AdversarialDebiasing.adversary_`); probabilities or logits.
            main_model: The classifier whose outputs are attacked.
            test_loader: Yields ``(x, y, z)`` batches.
            device: Torch device.

        Returns:
            One AUC per sensitive attribute, in column order of ``z``.
        """
        from sklearn.metrics import roc_auc_score

        discriminator.eval().to(device)
        main_model.eval().to(device)
        scores, trues = [], []
        with torch.no_grad():
            for batch in loader_batches(test_loader):
                if len(batch) < 3:
                    raise InvalidParameterError(
                        LOADER_MESSAGE.format(name="test_loader", owner="DiscriminatoryBehavior", n=len(batch))
                    )
                out = discriminator(main_model(batch[0].to(device))).float().cpu()
                scores.append(out.reshape(len(out), -1).numpy())
                trues.append(_numpy(batch[2]).reshape(len(out), -1))
        if not scores:
            return []
        score = np.concatenate(scores)
        true = np.concatenate(trues)
        aucs = []
        for i in range(true.shape[1]):
            if len(np.unique(true[:, i])) < 2:
                aucs.append(float("nan"))
            else:
                aucs.append(float(roc_auc_score(true[:, i], score[:, i])))
        return aucs

    # ------------------------------------------------------------------ evaluation
    def _collect(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.model.eval().to(self.device)
        preds, targets, attrs = [], [], []
        with torch.no_grad():
            for batch in loader_batches(self.test_loader):
                if len(batch) < 3:
                    raise InvalidParameterError(
                        LOADER_MESSAGE.format(name="test_loader", owner=type(self).__name__, n=len(batch))
                    )
                x, y, z = batch[0], batch[1], batch[2]
                preds.append(self.model(x.to(self.device)).argmax(1).cpu().numpy().reshape(-1))
                targets.append(_numpy(y).reshape(-1))
                attrs.append(_numpy(z).reshape(len(y), -1))
        if not preds:
            raise InvalidParameterError(
                f"The 'test_loader' parameter of {type(self).__name__} must yield at least one batch. Got an empty "
                "loader instead."
            )
        return np.concatenate(preds), np.concatenate(targets), np.concatenate(attrs)

    def evaluate_subgroup_metrics(self) -> dict[int, dict[str, float]]:
        """Fairness metrics for every sensitive attribute (column of ``z``).

        Returns:
            ``{attr_index: {acc_true, acc_false, demographic_parity, true_positive_parity,
            false_positive_parity, p_rule, equalized_odds}}``; accuracies in percent, p_rule in percent,
            the parities as fractions. Also stored as ``metrics_``.

        Raises:
            InvalidParameterError: when the loader does not yield z, or predictions or labels are not binary.
        """
        validate_params(self)
        predictions, targets, attributes = self._collect()
        owner = type(self).__name__
        _as_1d(targets, "targets", owner, binary=True)
        _as_1d(predictions, "predictions", owner, binary=True)
        metrics: dict[int, dict[str, float]] = {}
        for i in range(attributes.shape[1]):
            attr = attributes[:, i]
            acc_true, acc_false = self.accuracy(predictions, targets, attr)
            tpp = self.true_positive_parity(predictions, targets, attr)
            fpp = self.false_positive_parity(predictions, targets, attr)
            metrics[i] = {
                "acc_true": acc_true,
                "acc_false": acc_false,
                "demographic_parity": self.demographic_parity(predictions, attr),
                "true_positive_parity": tpp,
                "false_positive_parity": fpp,
                "p_rule": self.p_rule(predictions, attr),
                "equalized_odds": tpp + fpp,
            }
        self.metrics_ = metrics
        return metrics
