"""Attribute inference from a model's outputs (Duddu and Boutet, CIKM 2022).

The adversary queries the target model on its own records, for which it knows the sensitive attributes, and
trains one classifier per attribute that maps the target's outputs (logits) to the attribute. The decision
threshold is the one maximising the geometric mean of TPR and TNR (G-mean) on the adversary's own data, which
suits the strongly unbalanced attributes of tabular data. The attack is then applied to the target records.

Reference: V. Duddu and A. Boutet, "Inferring Sensitive Attributes from Model Explanations", CIKM 2022.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from amulet._validation import InstanceOf, Interval, validate_params
from amulet.exceptions import InvalidParameterError

from ._base import AttributeInferenceAttack

__all__ = ["NON_BINARY_MESSAGE", "DudduCIKM2022"]

#: Message for a sensitive attribute that is not binary.
NON_BINARY_MESSAGE = (
    "The 'z_train_adv' parameter of {owner} must hold binary (0/1) sensitive attributes, one per column, with both "
    "values present. Column {column} has values {values}."
)


def _to_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class DudduCIKM2022(AttributeInferenceAttack):
    """Infer each binary sensitive attribute from the target model's logits with an MLP.

    Args:
        target_model: The model whose outputs are attacked (queried in eval mode).
        x_train_adv: The adversary's records, shape (n_adv, ...).
        x_test: Records to attack, shape (n_test, ...).
        z_train_adv: Sensitive attributes of ``x_train_adv``, shape (n_adv, n_attributes) or (n_adv,), each
            column binary.
        batch_size: Batch size for querying the target model.
        device: Torch device.
        hidden_layer_sizes: Sizes of the attack MLP's hidden layers (keyword-only).
        max_iter: Maximum training epochs of the attack MLP (keyword-only).
        random_state: Seed of the attack MLP (keyword-only).

    Attributes:
        thresholds_: Decision threshold chosen per attribute (on the adversary's data).
        attack_models_: The fitted scikit-learn classifiers, one per attribute.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values, a
            non-binary attribute column, or ``x_train_adv`` and ``z_train_adv`` of different lengths.

    Example:
        >>> import numpy as np, torch
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(400, 3)).astype("float32"); z = (x[:, :1] > 0).astype(int)
        >>> model = torch.nn.Linear(3, 2)
        >>> out = DudduCIKM2022(model, x[:200], x[200:], z[:200], 64, "cpu", max_iter=50).attack()
        >>> sorted(out[0])
        ['confidence_values', 'predictions']
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "x_train_adv": [InstanceOf((np.ndarray, torch.Tensor))],
        "x_test": [InstanceOf((np.ndarray, torch.Tensor))],
        "z_train_adv": [InstanceOf((np.ndarray, torch.Tensor))],
        "batch_size": [Interval(int, 1, None)],
        "device": [InstanceOf((str, torch.device))],
        "hidden_layer_sizes": [InstanceOf(tuple)],
        "max_iter": [Interval(int, 1, None)],
        "random_state": [Interval(int, 0, 2**32 - 1)],
    }

    def __init__(
        self,
        target_model: nn.Module,
        x_train_adv: np.ndarray,
        x_test: np.ndarray,
        z_train_adv: np.ndarray,
        batch_size: int,
        device: str | torch.device,
        *,
        hidden_layer_sizes: tuple[int, ...] = (64, 128, 32),
        max_iter: int = 300,
        random_state: int = 1337,
    ):
        super().__init__(target_model, x_train_adv, x_test, z_train_adv, device)
        self.batch_size = batch_size
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.random_state = random_state
        self._checked_attributes()

    def _checked_attributes(self) -> np.ndarray:
        """Validate the parameters and return ``z_train_adv`` as a 2-D array of binary columns."""
        validate_params(self)
        owner = type(self).__name__
        z = _to_numpy(self.z_train_adv)
        z = z.reshape(len(z), -1)
        if len(z) != len(self.x_train_adv):
            raise InvalidParameterError(
                f"The 'z_train_adv' parameter of {owner} must have one row per row of x_train_adv "
                f"({len(self.x_train_adv)}). Got {len(z)} rows instead."
            )
        for i in range(z.shape[1]):
            values = np.unique(z[:, i])
            if len(values) != 2 or not np.isin(values, (0, 1)).all():
                raise InvalidParameterError(
                    NON_BINARY_MESSAGE.format(owner=owner, column=i, values=values[:10].tolist())
                )
        return z

    def _outputs(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        from amulet.utils._evaluation import predict_logits

        tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        return predict_logits(self.target_model, tensor.float(), batch_size=self.batch_size, device=self.device).numpy()

    def attack(self) -> dict[int, dict[str, np.ndarray]]:
        """Train one attack model per attribute and infer the attributes of ``x_test``.

        Returns:
            ``{attr_index: {"predictions": bool array (n_test,), "confidence_values": float array (n_test,)}}``,
            the confidence being the attack model's probability that the attribute is 1.

        Raises:
            InvalidParameterError: for bad parameters, a non-binary attribute column, or ``x_train_adv`` and
                ``z_train_adv`` of different lengths.
        """
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.metrics import roc_curve
        from sklearn.neural_network import MLPClassifier
        from threadpoolctl import threadpool_limits

        z = self._checked_attributes()
        train_features = self._outputs(self.x_train_adv)
        test_features = self._outputs(self.x_test)
        results: dict[int, dict[str, np.ndarray]] = {}
        self.thresholds_: dict[int, float] = {}
        self.attack_models_: dict[int, MLPClassifier] = {}
        for i in range(z.shape[1]):
            target = z[:, i].astype(np.int64)
            model = MLPClassifier(
                solver="adam",
                alpha=1e-3,
                hidden_layer_sizes=self.hidden_layer_sizes,
                max_iter=self.max_iter,
                random_state=self.random_state,
            )
            # The attack MLP is small: one BLAS thread is faster than several, and far faster on a busy machine.
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(train_features, target)
                train_scores = model.predict_proba(train_features)[:, 1]
            fpr, tpr, thresholds = roc_curve(target, train_scores)
            best = int(np.argmax(np.sqrt(tpr * (1 - fpr))))
            threshold = float(min(thresholds[best], 1.0))
            with threadpool_limits(limits=1):
                test_scores = model.predict_proba(test_features)[:, 1]
            results[i] = {"predictions": test_scores >= threshold, "confidence_values": test_scores}
            self.thresholds_[i] = threshold
            self.attack_models_[i] = model
        return results
