"""Metrics of attribute inference attacks: balanced accuracy and AUC per attribute."""

from __future__ import annotations

import numpy as np
import torch

from amulet.exceptions import InvalidParameterError

__all__ = ["evaluate_attribute_inference"]


def evaluate_attribute_inference(
    z_test: np.ndarray | torch.Tensor, predictions: dict[int, dict[str, np.ndarray]]
) -> dict[int, dict[str, float]]:
    """Balanced accuracy and ROC AUC of an attribute inference attack, per sensitive attribute.

    Args:
        z_test: True sensitive attributes of the attacked records, shape (n, n_attributes) or (n,).
        predictions: The attack's output, ``{attr_index: {"predictions", "confidence_values"}}``.

    Returns:
        ``{attr_index: {"attack_accuracy": balanced accuracy in [0, 1], "auc_score": ROC AUC}}`` for every
        attribute in ``predictions``; the AUC is NaN when ``z_test`` holds a single value for that attribute.

    Raises:
        InvalidParameterError: when an attribute index is not a column of ``z_test`` or lengths differ.

    Example:
        >>> import numpy as np
        >>> z = np.array([[0], [0], [1], [1]])
        >>> out = {0: {"predictions": np.array([0, 1, 1, 1]), "confidence_values": np.array([.1, .6, .7, .9])}}
        >>> evaluate_attribute_inference(z, out)
        {0: {'attack_accuracy': 0.75, 'auc_score': 1.0}}
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    z = z_test.detach().cpu().numpy() if isinstance(z_test, torch.Tensor) else np.asarray(z_test)
    z = z.reshape(len(z), -1)
    metrics: dict[int, dict[str, float]] = {}
    for i, pred in predictions.items():
        if not 0 <= int(i) < z.shape[1]:
            raise InvalidParameterError(
                f"The 'predictions' parameter of evaluate_attribute_inference must be keyed by column indices of "
                f"z_test (0 to {z.shape[1] - 1}). Got the key {i!r} instead."
            )
        hard = np.asarray(pred["predictions"]).reshape(-1).astype(np.int64)
        soft = np.asarray(pred["confidence_values"], dtype=np.float64).reshape(-1)
        truth = z[:, int(i)].astype(np.int64)
        if len(hard) != len(truth) or len(soft) != len(truth):
            raise InvalidParameterError(
                f"The 'predictions' parameter of evaluate_attribute_inference must hold one prediction per row of "
                f"z_test ({len(truth)}). Got {len(hard)} predictions and {len(soft)} confidence values instead."
            )
        if len(np.unique(truth)) == 2:
            auc = float(roc_auc_score(truth, soft))
            balanced = float(balanced_accuracy_score(truth, hard))
        else:  # one value only: balanced accuracy is the recall of that value, the AUC is undefined
            auc = float("nan")
            balanced = float((hard == truth).mean()) if len(truth) else float("nan")
        metrics[int(i)] = {"attack_accuracy": balanced, "auc_score": auc}
    return metrics
