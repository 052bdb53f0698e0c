"""Attribute inference from a model's outputs (Duddu and Boutet, CIKM 2022).

The adversary queries the target model on its own records, for which it knows the sensitive attributes, and
trains one classifier per attribute that maps the target's outputs (logits) to the attribute. The decision
threshold is the one maximising the geometric mean of TPR and TNR (G-mean) on the adversary's own data, which
suits the strongly unbalanced attributes of tabular data. The attack is then applied to the target records.

The attack MLPs (upstream: scikit-learn's ``MLPClassifier`` with Adam, alpha 1e-3) are trained in torch, all
attributes at once as one stacked network (:func:`fit_attack_mlps`), with scikit-learn's architecture and
regularisation (Glorot-uniform initialisation, ReLU hidden layers, a logistic output, the L2 penalty
``alpha / (2 * batch) * ||W||^2``, applied as Adam weight decay on the weights) and its stopping rule (the
epoch's training loss not improving by 1e-4 for 10 epochs, at most ``max_iter`` epochs), in float32, with
mini-batches of 256 at learning rate 0.003 (scikit-learn: 200 at 0.001) and at most 300 Adam steps per network.
scikit-learn's rule alone runs 60-120 epochs on census (3,000 adversary rows), while the attack accuracy stops
changing after 10-20 epochs (within 0.005 balanced accuracy of scikit-learn's from 180 steps on, four seeds):
the step budget cuts the epochs that change nothing. ``tests/attribute_inference/test_torch_attack_mlp.py``
compares the accuracy with scikit-learn's; ``benchmarks/bench_attack_mlp.py`` measures both side by side.

Reference: V. Duddu and A. Boutet, "Inferring Sensitive Attributes from Model Explanations", CIKM 2022.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torch import nn

from amulet._validation import InstanceOf, Interval, validate_params
from amulet.exceptions import InvalidParameterError
from amulet.utils import layer1_threads, predict_logits, single_thread

from ._base import AttributeInferenceAttack

__all__ = ["NON_BINARY_MESSAGE", "DudduCIKM2022", "fit_attack_mlps"]

#: Message for a sensitive attribute that is not binary.
NON_BINARY_MESSAGE = (
    "The 'z_train_adv' parameter of {owner} must hold binary (0/1) sensitive attributes, one per column, with both "
    "values present. Column {column} has values {values}."
)


#: Mini-batch Adam: scikit-learn's batch of 200 rounded up to 256 rows, three times its learning rate (0.001).
_BATCH = 256
_LEARNING_RATE = 0.003
#: Adam steps each network takes at most (the epochs follow from the rows: ``ceil(steps / batches per epoch)``,
#: never more than ``max_iter``). On census the attack accuracy has plateaued by 120-240 steps (measured with 3,000
#: adversary rows: balanced accuracy within 0.005 of scikit-learn's from 180 steps on, four seeds).
_STEPS = 240
_ALPHA = 1e-3
_BETAS = (0.9, 0.999)
_EPS = 1e-8
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
    gen = torch.Generator().manual_seed(int(random_state))
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32).reshape(len(x), -1)
    n, k = len(x), y.shape[1]
    sizes = [x.shape[1], *hidden_layer_sizes, 1]
    shapes: list[tuple[int, ...]] = []
    draws = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        # scikit-learn's Glorot-uniform bound; factor 2 for the logistic output layer
        factor = 2.0 if i == len(sizes) - 2 else 6.0
        bound = (factor / (fan_in + fan_out)) ** 0.5
        for shape in ((k, fan_in, fan_out), (k, 1, fan_out)):
            shapes.append(shape)
            draws.append((torch.rand(shape, generator=gen) * 2 - 1).mul_(bound).reshape(k, -1))
    # every weight and bias of the k networks lives in one (k, P) tensor, so that one Adam update of a few
    # elementwise operations serves all of them (torch.optim's CPU Adam loops over the tensors one by one, which
    # cost more than the forward and backward passes here)
    flat = torch.cat(draws, dim=1).requires_grad_()
    widths = [math.prod(shape[1:]) for shape in shapes]
    batch = min(_BATCH, n)
    batches = math.ceil(n / batch)
    # scikit-learn's L2 penalty alpha / (2 * batch) * ||W||^2 has the gradient alpha / batch * W: added to the
    # weights' gradients (not the biases'), as Adam's weight decay does, without a penalty term in the graph
    decay = torch.cat([torch.full((w,), _ALPHA / batch if j % 2 == 0 else 0.0) for j, w in enumerate(widths)])
    moment1, moment2 = torch.zeros_like(flat), torch.zeros_like(flat)
    epochs = max(1, min(int(max_iter), math.ceil(_STEPS / batches)))
    labels = y.T.unsqueeze(-1)  # (k, n, 1)
    best = torch.full((k,), float("inf"))
    stale = torch.zeros(k, dtype=torch.long)
    done = torch.zeros(k, dtype=torch.bool)
    final: list[torch.Tensor | None] = [None] * k
    step = 0
    with single_thread():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            # one gather per epoch; the mini-batches are then contiguous slices (views)
            x_epoch, y_epoch = x[order].unsqueeze(0).expand(k, -1, -1), labels[:, order]
            epoch_loss = torch.zeros(k)
            for start in range(0, n, batch):
                # fresh views of the flat tensor each step: a view's autograd node serves one backward pass
                parts = [p.view(shape) for p, shape in zip(flat.split(widths, dim=1), shapes)]
                h = x_epoch[:, start : start + batch]
                for j in range(0, len(parts), 2):
                    h = torch.baddbmm(parts[j + 1], h, parts[j])
                    if j < len(parts) - 2:
                        h = torch.relu_(h)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    h, y_epoch[:, start : start + batch], reduction="none"
                ).mean(dim=(1, 2))
                flat.grad = None
                loss.sum().backward()
                grad = flat.grad
                assert grad is not None  # flat is a leaf that requires grad
                step += 1
                with torch.no_grad():
                    _adam_step(flat, grad, moment1, moment2, decay, step)
                epoch_loss += loss.detach() * h.shape[1]
            with torch.no_grad():
                # scikit-learn's epoch loss: the rows' mean loss plus each batch's penalty, weighted by its rows
                squares = flat.detach() ** 2 * (decay > 0)
                epoch_loss = epoch_loss / n + squares.sum(dim=1) * (_ALPHA * batches / (2 * n))
            # scikit-learn's rule: no improvement over the best loss by tol for n_iter_no_change epochs
            improved = epoch_loss <= best - _TOL
            stale = torch.where(improved, torch.zeros_like(stale), stale + 1)
            best = torch.minimum(best, epoch_loss)
            for col in torch.nonzero(~done & (stale > _NO_CHANGE)).flatten().tolist():
                done[col] = True
                final[col] = flat[col].detach().clone()
            if bool(done.all()):
                break
    models = []
    for col in range(k):
        state = final[col]
        row = flat[col].detach() if state is None else state
        tensors = [p.view(shape[1:]) for p, shape in zip(row.split(widths), shapes)]
        layers: list[nn.Module] = []
        for j in range(0, len(tensors), 2):
            linear = nn.Linear(sizes[j // 2], sizes[j // 2 + 1])
            with torch.no_grad():
                linear.weight.copy_(tensors[j].T)
                linear.bias.copy_(tensors[j + 1].reshape(-1))
            layers += [linear, nn.ReLU()] if j < len(tensors) - 2 else [linear]
        models.append(nn.Sequential(*layers).eval())
    return models


def _adam_step(
    params: torch.Tensor,
    grad: torch.Tensor,
    moment1: torch.Tensor,
    moment2: torch.Tensor,
    decay: torch.Tensor,
    step: int,
) -> None:
    """One step of ``torch.optim.Adam`` (betas 0.9 / 0.999, eps 1e-8, per-element weight decay) in place."""
    grad = grad.addcmul(decay, params)
    moment1.lerp_(grad, 1 - _BETAS[0])
    moment2.mul_(_BETAS[1]).addcmul_(grad, grad, value=1 - _BETAS[1])
    correction1 = 1 - _BETAS[0] ** step
    correction2 = 1 - _BETAS[1] ** step
    denominator = (moment2.sqrt() / math.sqrt(correction2)).add_(_EPS)
    params.addcdiv_(moment1, denominator, value=-_LEARNING_RATE / correction1)


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
        x_train_adv: np.ndarray | torch.Tensor,
        x_test: np.ndarray | torch.Tensor,
        z_train_adv: np.ndarray | torch.Tensor,
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
        z = self._checked_attributes()
        with layer1_threads(self.target_model):
            return self._attack(z)

    def _attack(self, z: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
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
