"""One training step's loss and parameter gradients for an MLP chain, written out instead of recorded by autograd.

Every layer-1 training loop (``train_classifier``, the engine's ``train_model``, adversarial training's clean
and adversarial steps, model extraction, watermarking) takes hundreds of steps of ``criterion(model(x),
y).backward()`` on small MLPs, where autograd's recording and replay are a visible share of each step: written
out, a whole step (with the flat Adam step) of census LinearNet m1 on 128 rows is 1.09x faster on one thread
and 1.14x on two (``benchmarks/bench_layer1_steps.py``). For a model whose forward is a chain of Linear,
BatchNorm1d, ReLU and Flatten layers (:func:`amulet.utils._stacked_chain.chain_layers`) in training mode,
trained with a plain ``nn.CrossEntropyLoss`` or ``nn.MSELoss``, :class:`TrainingStep` runs the ATen operations
autograd runs, in its order and on the same operands:

* forward: ``addmm`` per Linear (what ``F.linear`` calls), ``native_batch_norm`` per BatchNorm1d (with the
  module's running-statistics update: ``num_batches_tracked`` and the same averaging factor), ``relu``, then
  ``log_softmax`` and ``nll_loss_forward`` (or ``mse_loss``);
* backward: ``nll_loss_backward`` and ``_log_softmax_backward_data`` (or ``mse_loss_backward``),
  ``threshold_backward`` per ReLU, ``native_batch_norm_backward`` per BatchNorm1d, and per Linear the products
  autograd takes for a contiguous weight (``g.t() @ input`` for the weight, ``g @ weight`` for the input) and
  ``g.sum(0)`` for the bias.

So the loss, every gradient and the running statistics equal autograd's bit for bit
(``tests/utils/test_training_step.py`` checks whole trainings). Anything else (another loss or layer,
Dropout, a hook on a module or a parameter, eval mode, a batch of one under BatchNorm, autocast, a GPU)
takes autograd, so the caller never has to know which path ran.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from amulet.utils._flat_adam import FlatAdam
from amulet.utils._hooks import has_hooks
from amulet.utils._stacked_chain import ChainLayer, cached_chain_layers

__all__ = ["TrainingStep"]

_aten = torch.ops.aten
#: The loss kernels' reduction code for "mean".
_MEAN = 1


def _loss_kind(criterion: nn.Module) -> str | None:
    """``"ce"`` for a plain ``nn.CrossEntropyLoss()``, ``"mse"`` for ``nn.MSELoss()``; None for any other loss."""
    if criterion._forward_hooks or criterion._forward_pre_hooks or getattr(criterion, "reduction", None) != "mean":
        return None
    if type(criterion) is nn.CrossEntropyLoss and criterion.weight is None and criterion.label_smoothing == 0.0:
        return "ce"
    if type(criterion) is nn.MSELoss:
        return "mse"
    return None


class TrainingStep:
    """``loss = step(x, y)``: ``criterion(model(x), y)`` with its gradients added to the parameters' ``.grad``.

    Written out for an MLP chain trained with a plain cross-entropy or MSE loss (see the module notes), by
    autograd for anything else; the numbers are the same either way. Build it once per training loop, before its first
    optimizer step (a hook on a parameter, checked here, sends every step to autograd).

    Args:
        model: The model being trained (in training mode when a step is taken).
        criterion: The loss module.
        steps: The loop's :class:`~amulet.utils.FlatAdam` (from :func:`~amulet.utils.flat_adam`), which
            takes the written-out gradients as ``backward()`` would leave them.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, steps: FlatAdam) -> None:
        self.model = model
        self.criterion = criterion
        self.steps = steps
        self._loss = _loss_kind(criterion)
        self._layers = self._chain(model) if self._loss is not None else None
        self._modules = list(model.modules())
        #: The model's output width (its last Linear's), which MSE targets must have.
        self._width = next((m.out_features for _, m in reversed(self._layers or []) if isinstance(m, nn.Linear)), 0)

    @staticmethod
    def _chain(model: nn.Module) -> list[tuple[ChainLayer, Any]] | None:
        if has_hooks(model):
            return None
        layers = cached_chain_layers(model)
        if layers is None:
            return None
        modules = dict(model.named_modules())
        chain: list[tuple[ChainLayer, Any]] = []
        for layer in layers:
            module = modules[layer.prefix[:-1]]
            if layer.kind == "dropout":
                return None  # its random mask would have to draw exactly what F.dropout draws
            if layer.kind == "linear" and (not module.weight.is_contiguous() or module.weight.device.type != "cpu"):
                return None  # autograd takes another product for a transposed weight; GPUs are not checked
            if layer.kind == "batchnorm" and not (layer.affine and layer.running):
                return None
            chain.append((layer, module))
        if any(not p.requires_grad for p in model.parameters()):
            return None
        return chain

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step's loss (a 0-d tensor), its gradients added to the parameters' ``.grad``."""
        if self._applies(x, y):
            loss, grads = self._loss_and_grads(x, y)
            self.steps.add_grads(grads)
            return loss
        loss = self.criterion(self.model(x), y)
        loss.backward()
        return loss

    def _applies(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        if self._layers is None or not torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.requires_grad or x.dim() < 2 or len(x) < 2:
            return False  # BatchNorm's batch of one: autograd raises the model's own explanation
        if self._loss == "ce" and (y.dtype != torch.int64 or y.shape != (len(x),)):
            return False
        if self._loss == "mse" and (y.dtype != torch.float32 or y.requires_grad or y.shape != (len(x), self._width)):
            return False  # F.mse_loss would broadcast (with a warning): autograd does exactly that
        if x.dim() != 2 and self._layers[0][0].kind != "flatten":
            return False  # a Linear on more dimensions is a batched product, not addmm
        return all(m.training for m in self._modules) and not has_hooks(self.model, parameters=False)

    @torch.no_grad()
    def _loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        assert self._layers is not None
        h = x
        saved: list[tuple[torch.Tensor, ...]] = []
        for layer, module in self._layers:
            if layer.kind == "flatten":
                h = h.flatten(1)
                saved.append(())
            elif layer.kind == "linear":
                saved.append((h,))
                h = h @ module.weight.t() if module.bias is None else torch.addmm(module.bias, h, module.weight.t())
            elif layer.kind == "batchnorm":
                # nn.BatchNorm1d.forward in training mode: count the batch, then the kernel updates the averages
                module.num_batches_tracked.add_(1)
                factor = 1.0 / float(module.num_batches_tracked) if module.momentum is None else module.momentum
                out, mean, invstd = _aten.native_batch_norm(
                    h, module.weight, module.bias, module.running_mean, module.running_var, True, factor, module.eps
                )
                saved.append((h, mean, invstd))
                h = out
            else:  # relu
                h = torch.relu(h)
                saved.append((h,))
        if self._loss == "ce":
            log_probs = torch.log_softmax(h, 1)
            ignore = self.criterion.ignore_index
            loss, total_weight = _aten.nll_loss_forward(log_probs, y, None, _MEAN, ignore)
            g = _aten.nll_loss_backward(torch.ones_like(loss), log_probs, y, None, _MEAN, ignore, total_weight)
            g = _aten._log_softmax_backward_data(g, log_probs, 1, log_probs.dtype)
        else:
            loss = _aten.mse_loss(h, y, _MEAN)
            g = _aten.mse_loss_backward(torch.ones_like(loss), h, y, _MEAN)
        grads: list[tuple[torch.Tensor, torch.Tensor]] = []
        first_linear = next(i for i, (layer, _) in enumerate(self._layers) if layer.kind == "linear")
        for i in range(len(self._layers) - 1, first_linear - 1, -1):
            layer, module = self._layers[i]
            if layer.kind == "linear":
                (inp,) = saved[i]
                if module.bias is not None:
                    grads.append((module.bias, g.sum(0)))
                grads.append((module.weight, g.t().mm(inp)))
                if i > first_linear:
                    g = g.mm(module.weight)
            elif layer.kind == "batchnorm":
                inp, mean, invstd = saved[i]
                g, grad_weight, grad_bias = _aten.native_batch_norm_backward(
                    g, inp, module.weight, module.running_mean, module.running_var, mean, invstd, True, module.eps,
                    [True, True, True],
                )  # fmt: skip
                grads.append((module.weight, grad_weight))
                grads.append((module.bias, grad_bias))
            elif layer.kind == "relu":
                g = _aten.threshold_backward(g, saved[i][0], 0)
        return loss, grads
