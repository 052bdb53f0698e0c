"""Attribute inference from a model's outputs (Duddu and Boutet, CIKM 2022).

The adversary queries the target model on its own records, for which it knows the sensitive attributes, and
trains one classifier per attribute that maps the target's outputs (logits) to the attribute. The decision
threshold is the one maximising the geometric mean of TPR and TNR (G-mean) on the adversary's own data, which
suits the strongly unbalanced attributes of tabular data. The attack is then applied to the target records.

The attack MLPs (upstream: scikit-learn's ``MLPClassifier`` with Adam, alpha 1e-3) are trained in torch, all
attributes at once as one stacked network (:func:`fit_attack_mlps`), with scikit-learn's architecture and
regularisation (Glorot-uniform initialisation, ReLU hidden layers, a logistic output, the L2 penalty
``alpha / 2 * ||W||^2`` averaged over the batch) and its stopping rule (the epoch's training loss not
improving by 1e-4 for 10 epochs, at most ``max_iter`` epochs), but full-batch Adam at learning rate 0.03
instead of mini-batches of 200 at 0.001: the input is the target's few logits, so the full batch is cheap, and
the few hundred steps replace thousands of tiny ones. On census the attack accuracy stays at scikit-learn's
(tests/attribute_inference/test_torch_attack_mlp.py compares them).

Reference: V. Duddu and A. Boutet, "Inferring Sensitive Attributes from Model Explanations", CIKM 2022.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from amulet._validation import InstanceOf, Interval, validate_params
from amulet.exceptions import InvalidParameterError

from ._base import AttributeInferenceAttack

__all__ = ["NON_BINARY_MESSAGE", "DudduCIKM2022", "fit_attack_mlps"]

#: Message for a sensitive attribute that is not binary.
NON_BINARY_MESSAGE = (
    "The 'z_train_adv' parameter of {owner} must hold binary (0/1) sensitive attributes, one per column, with both "
    "values present. Column {column} has values {values}."
)


#: Full-batch Adam's learning rate; the rest is scikit-learn MLPClassifier's (alpha, stopping rule).
_LEARNING_RATE = 0.03
_ALPHA = 1e-3
#: Most rows per batch (the adversary's records are at most a few tens of thousands of logit vectors).
_BATCH = 65536
_TOL = 1e-4
_NO_CHANGE = 10


def fit_attack_mlps(
    features: np.ndarray, targets: np.ndarray, hidden_layer_sizes: tuple[int, ...], max_iter: int, random_state: int
) -> list[nn.Sequential]:
    """Train one binary MLP per column of ``targets`` on the same ``features``, all columns as one stacked net.

    Each column's network is trained independently (its loss, Adam state and stopping are its own); stacking
    them only batches the arithmetic. The recipe is described in the module docstring.

    Args:
        features: Inputs, shape (n, d).
        targets: Binary labels, shape (n, k).
        hidden_layer_sizes: Hidden layer widths.
        max_iter: Most training epochs.
        random_state: Seed of initialisation and shuffling.

    Returns:
        ``k`` eval-mode ``nn.Sequential`` networks whose single output is the logit of label 1.
    """
    from amulet.utils._threads import single_thread

    gen = torch.Generator().manual_seed(int(random_state))
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32).reshape(len(x), -1)
    n, k = len(x), y.shape[1]
    sizes = [x.shape[1], *hidden_layer_sizes, 1]
    weights, biases = [], []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        # scikit-learn's Glorot-uniform bound; factor 2 for the logistic output layer
        factor = 2.0 if i == len(sizes) - 2 else 6.0
        bound = (factor / (fan_in + fan_out)) ** 0.5
        weights.append((torch.rand(k, fan_in, fan_out, generator=gen) * 2 - 1).mul_(bound).requires_grad_())
        biases.append((torch.rand(k, 1, fan_out, generator=gen) * 2 - 1).mul_(bound).requires_grad_())
    params = [*weights, *biases]
    optimizer = torch.optim.Adam(params, lr=_LEARNING_RATE, eps=1e-8)
    batch = min(_BATCH, n)
    best = torch.full((k,), float("inf"))
    stale = torch.zeros(k, dtype=torch.long)
    done = torch.zeros(k, dtype=torch.bool)
    final: list[list[torch.Tensor] | None] = [None] * k
    with single_thread():
        for _ in range(max_iter):
            order = torch.randperm(n, generator=gen)
            epoch_loss = torch.zeros(k)
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                h = x[rows].unsqueeze(0).expand(k, -1, -1)
                for j, (w, b) in enumerate(zip(weights, biases)):
                    h = torch.baddbmm(b, h, w)
                    if j < len(weights) - 1:
                        h = torch.relu(h)
                target = y[rows].T.unsqueeze(-1)
                loss = nn.functional.binary_cross_entropy_with_logits(h, target, reduction="none").mean(dim=(1, 2))
                # scikit-learn: loss + alpha / (2 * batch) * sum of squared weights (biases not penalised)
                penalty = sum((w**2).sum(dim=(1, 2)) for w in weights) * (_ALPHA / (2 * len(rows)))
                total = loss + penalty
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()
                optimizer.step()
                epoch_loss += total.detach() * len(rows)
            epoch_loss /= n
            # scikit-learn's rule: no improvement over the best loss by tol for n_iter_no_change epochs
            improved = epoch_loss <= best - _TOL
            stale = torch.where(improved, torch.zeros_like(stale), stale + 1)
            best = torch.minimum(best, epoch_loss)
            for col in torch.nonzero(~done & (stale > _NO_CHANGE)).flatten().tolist():
                done[col] = True
                final[col] = [p[col].detach().clone() for p in params]
            if bool(done.all()):
                break
    models = []
    for col in range(k):
        state = final[col] or [p[col].detach().clone() for p in params]
        layers: list[nn.Module] = []
        for j in range(len(weights)):
            linear = nn.Linear(sizes[j], sizes[j + 1])
            with torch.no_grad():
                linear.weight.copy_(state[j].T)
                linear.bias.copy_(state[len(weights) + j].reshape(-1))
            layers += [linear, nn.ReLU()] if j < len(weights) - 1 else [linear]
        models.append(nn.Sequential(*layers).eval())
    return models


def _probability(model: nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(features, dtype=torch.float32))).reshape(-1).numpy()


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
        attack_models_: The trained attack MLPs, one per attribute (torch ``nn.Sequential`` whose output is
            the logit of attribute value 1; see :func:`fit_attack_mlps`).

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
        from amulet.utils._threads import layer1_threads

        z = self._checked_attributes()
        with layer1_threads(self.target_model):
            return self._attack(z)

    def _attack(self, z: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
        from sklearn.metrics import roc_curve

        train_features = self._outputs(self.x_train_adv)
        test_features = self._outputs(self.x_test)
        results: dict[int, dict[str, np.ndarray]] = {}
        self.thresholds_: dict[int, float] = {}
        self.attack_models_: dict[int, nn.Module] = {}
        models = fit_attack_mlps(train_features, z, self.hidden_layer_sizes, self.max_iter, self.random_state)
        for i, model in enumerate(models):
            target = z[:, i].astype(np.int64)
            train_scores = _probability(model, train_features)
            fpr, tpr, thresholds = roc_curve(target, train_scores)
            best = int(np.argmax(np.sqrt(tpr * (1 - fpr))))
            threshold = float(min(thresholds[best], 1.0))
            test_scores = _probability(model, test_features)
            results[i] = {"predictions": test_scores >= threshold, "confidence_values": test_scores}
            self.thresholds_[i] = threshold
            self.attack_models_[i] = model
        return results
