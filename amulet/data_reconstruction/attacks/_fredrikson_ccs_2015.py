"""Model inversion by gradient descent on the class confidence (Fredrikson, Jha, Ristenpart, CCS 2015).

For every class ``c`` the attack starts from an all-zero input and follows ``x <- x - lamda * grad c(x)`` with
the cost ``c(x) = 1 - p_c(x)``, ``p`` the model's class probabilities. It stops after ``alpha`` steps, when the
cost reaches ``gamma``, or when a step does not improve on the worst of the previous ``beta`` costs
(``c(x_i) >= max(c(x_{i-1}), ..., c(x_{i-beta}))``), and returns the iterate with the lowest cost. Only the
current and the best iterate are kept in memory.

Models that output logits (or log-probabilities) are handled by applying a softmax; models that already output
probabilities are used as they are (``output_type="auto"`` decides from the output at the starting point).

Reference: M. Fredrikson, S. Jha, T. Ristenpart, "Model Inversion Attacks that Exploit Confidence Information
and Basic Countermeasures", CCS 2015, Algorithm 1.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import torch
from torch import nn

from amulet._validation import InstanceOf, Interval, Options, validate_params
from amulet.data_reconstruction._layout import TabularLayout
from amulet.data_reconstruction.attacks._base import DataReconstructionAttack
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.progress import Progress, resolve_progress

__all__ = ["FredriksonCCS2015"]

logger = logging.getLogger(__name__)


class FredriksonCCS2015(DataReconstructionAttack):
    """Reconstruct one representative input per class by inverting the target model.

    Args:
        target_model: The model to invert (used in eval mode; not modified).
        input_size: Shape of one input, e.g. ``(1, 28, 28)`` or ``(n_features,)`` (an int for 1-D inputs).
            A leading batch dimension of 1, as upstream examples pass (``(1, 1, 28, 28)``), is accepted too.
        output_size: Number of classes.
        device: Torch device.
        alpha: Maximum number of gradient steps per class.
        beta: Patience: stop when a step is no better than the worst of the previous ``beta`` costs.
        gamma: Stop as soon as the cost ``1 - p_c`` is at most ``gamma``.
        lamda: Step size of the gradient descent.
        output_type: ``"logits"`` (apply a softmax), ``"probabilities"`` (use as is) or ``"auto"`` (probabilities
            when the output at the start is non-negative and sums to 1), keyword-only.
        clip_range: Optional ``(min, max)`` to clip every iterate to (e.g. ``(0, 1)`` for images), keyword-only.
        layout: Optional :class:`~amulet.data_reconstruction.TabularLayout` of 1-D tabular inputs, keyword-only.
            When given, every iterate's one-hot blocks are projected onto the probability simplex, or onto
            {x >= 0, sum <= 1} for a block without its first category (after the clip), so each block stays a
            distribution over its categories, the continuous counterpart of the
            valid one-hot inputs; without it a large step drives every category of a block to the clip
            bound and the block no longer names one category.
        progress: Progress reporter (task ``"inversion"``, one unit per class), keyword-only.

    Attributes:
        reconstructions_: The result of the last :meth:`attack`, one tensor of shape ``input_size`` per class.
        costs_: Lowest cost ``1 - p_c`` reached per class.
        n_iter_: Gradient steps taken per class.
        output_type_: ``"logits"`` or ``"probabilities"``, as resolved.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3)
        >>> recs = FredriksonCCS2015(model, (4,), 3, "cpu", alpha=50, lamda=0.5).attack()
        >>> len(recs), tuple(recs[0].shape)
        (3, (4,))
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "input_size": [InstanceOf((tuple, list, torch.Size), "a tuple of positive ints"), Interval(int, 1, None)],
        "output_size": [Interval(int, 1, None)],
        "device": [InstanceOf((str, torch.device))],
        "alpha": [Interval(int, 1, None)],
        "beta": [Interval(int, 1, None)],
        "gamma": [Interval(float, 0, 1)],
        "lamda": [Interval(float, 0, None, closed="neither")],
        "output_type": [Options({"auto", "logits", "probabilities"})],
        "clip_range": [InstanceOf(tuple, "a (min, max) tuple"), None],
        "layout": [InstanceOf(TabularLayout), None],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        target_model: nn.Module,
        input_size: tuple[int, ...] | int,
        output_size: int,
        device: str | torch.device,
        alpha: int,
        beta: int = 100,
        gamma: float = 0.001,
        lamda: float = 0.003,
        *,
        output_type: str = "auto",
        clip_range: tuple[float, float] | None = None,
        layout: TabularLayout | None = None,
        progress: Progress | None = None,
    ):
        super().__init__(target_model, input_size, output_size, device)
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.lamda = lamda
        self.output_type = output_type
        self.clip_range = clip_range
        self.layout = layout
        self.progress = progress
        validate_params(self)

    def _batched_shape(self, device: torch.device) -> tuple[int, ...]:
        """The shape of a batch of one input that the model maps to ``(1, output_size)``."""
        shape = (self.input_size,) if isinstance(self.input_size, int) else tuple(int(s) for s in self.input_size)
        candidates = [(1, *shape)]
        if len(shape) >= 2 and shape[0] == 1:
            candidates.append(shape)
        out_shape = None
        with torch.no_grad():
            for cand in candidates:
                try:
                    out = self.target_model(torch.zeros(cand, device=device))
                except RuntimeError:
                    continue
                out_shape = tuple(out.shape)
                if out.dim() == 2 and out.shape[0] == 1:
                    if out.shape[1] != self.output_size:
                        raise InvalidParameterError(
                            PARAM_MESSAGE.format(
                                name="output_size",
                                owner=type(self).__name__,
                                expected=f"the number of model outputs ({out.shape[1]})",
                                value=self.output_size,
                            )
                        )
                    return cand
        raise InvalidParameterError(
            PARAM_MESSAGE.format(
                name="input_size",
                owner=type(self).__name__,
                expected="the shape of one model input (with or without a leading batch dimension of 1)",
                value=self.input_size,
            )
            + (f" The model returned outputs of shape {out_shape}." if out_shape else "")
        )

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.output_type_ == "probabilities" else torch.softmax(out, dim=1)

    def _invert(self, label: int, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, float, int]:
        x = torch.zeros(shape, device=device, requires_grad=True)
        cost = 1.0 - self._probabilities(self.target_model(x))[0, label]
        best_cost, best_x = float(cost.item()), x.detach().clone()
        recent: deque[float] = deque([best_cost], maxlen=self.beta)
        steps = 0
        for i in range(1, self.alpha + 1):
            if best_cost <= self.gamma:
                break
            (grad,) = torch.autograd.grad(cost, x)
            with torch.no_grad():
                x_next = x - self.lamda * grad
                if self.clip_range is not None:
                    x_next = x_next.clamp(float(self.clip_range[0]), float(self.clip_range[1]))
                if self.layout is not None:
                    x_next = self.layout.project(x_next)
            x = x_next.requires_grad_(True)
            cost = 1.0 - self._probabilities(self.target_model(x))[0, label]
            value = float(cost.item())
            steps = i
            if value < best_cost:
                best_cost, best_x = value, x.detach().clone()
            if value <= self.gamma:
                break
            if i > self.beta and value >= max(recent):
                break
            recent.append(value)
        return best_x, best_cost, steps

    def attack(self) -> list[torch.Tensor]:
        """Reconstruct one input per class.

        Returns:
            ``output_size`` tensors (on the CPU), each of shape ``input_size``: the lowest-cost iterate per class.

        Raises:
            InvalidParameterError: for bad parameters, or an ``input_size``/``output_size`` the model does not take.
        """
        validate_params(self)
        if self.clip_range is not None and not (
            len(self.clip_range) == 2 and float(self.clip_range[0]) < float(self.clip_range[1])
        ):
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="clip_range",
                    owner=type(self).__name__,
                    expected="a (min, max) tuple with min < max",
                    value=self.clip_range,
                )
            )
        n_elements = self.input_size if isinstance(self.input_size, int) else math.prod(self.input_size)
        if self.layout is not None and self.layout.n_features != n_elements:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="layout",
                    owner=type(self).__name__,
                    expected=f"the layout of the {n_elements} input features",
                    value=f"a layout of {self.layout.n_features} columns",
                )
            )
        progress = resolve_progress(self.progress)
        device = torch.device(self.device)
        model = self.target_model
        was_training = model.training
        model.eval().to(device)
        requires_grad = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            shape = self._batched_shape(device)
            if self.output_type == "auto":
                with torch.no_grad():
                    out = model(torch.zeros(shape, device=device))
                is_prob = bool(
                    (out >= 0).all()
                    and (out <= 1).all()
                    and torch.allclose(out.sum(1), torch.ones(1, device=device), atol=1e-4)
                )
                self.output_type_ = "probabilities" if is_prob else "logits"
            else:
                self.output_type_ = self.output_type
            out_shape = (self.input_size,) if isinstance(self.input_size, int) else tuple(self.input_size)
            reconstructions, costs, n_iter = [], [], []
            progress.start("inversion", self.output_size, "model inversion")
            for label in range(self.output_size):
                x, cost, steps = self._invert(label, shape, device)
                reconstructions.append(x.reshape(out_shape).cpu())
                costs.append(cost)
                n_iter.append(steps)
                logger.debug("class %d: cost %.5f after %d steps", label, cost, steps)
                progress.advance("inversion", cost=round(cost, 5), steps=steps)
            progress.finish("inversion")
        finally:
            for p, flag in zip(model.parameters(), requires_grad):
                p.requires_grad_(flag)
            model.train(was_training)
        self.reconstructions_ = reconstructions
        self.costs_ = costs
        self.n_iter_ = n_iter
        return reconstructions

    def get_reconstructed_data(self) -> list[torch.Tensor]:
        """Alias of :meth:`attack` (the name used by earlier upstream versions)."""
        return self.attack()
