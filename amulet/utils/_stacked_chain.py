"""Hand-written stacked kernels for K models that are a chain of Linear, BatchNorm1d, ReLU and Dropout layers.

Multi-layer perceptrons (:class:`amulet.models.LinearNet` and any model whose traced forward is a plain chain
of the layers below) are the models LiRA shadows and distribution-inference populations are made of. For
them, ``vmap`` over ``functional_call`` spends most of its time outside the matrix products: every layer
becomes a generic batching rule, autograd records a dozen elementwise ops per BatchNorm, and BatchNorm needs
a shim. Here the K models' weights are stacked tensors ``(K, out, in)`` and the forward and backward passes
are written out by hand:

* Linear: one ``baddbmm`` forward; ``bmm`` for the weight and input gradients;
* BatchNorm1d (training): ``var_mean`` and one fused multiply-add forward, and the closed-form backward
  ``dx = a * g + b * x + c`` (two passes), with the running statistics updated as ``nn.BatchNorm1d`` does
  (unbiased variance, ``momentum=None`` = cumulative average, ``num_batches_tracked``);
* ReLU and Dropout: masks from the saved output;
* the loss: mean cross-entropy over each model's own batch, summed over the models, so model ``k``'s
  gradient is its own loss's gradient.

In evaluation, the first layer of all K models runs as ONE matrix product on the shared input (``x @ W^T``
with ``W`` of shape ``(K * out, in)``), which is most of the cost of scoring a population on many records.

The procedure (initial weights, each model's own shuffling, skipped batches of one under BatchNorm, the
optimizer) is the batched trainer's (:mod:`amulet.utils._population`); only the kernels differ, so the
models agree with one-at-a-time training up to float rounding (tested against ``train_model``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from amulet.utils._hooks import has_hooks

__all__ = [
    "ChainCache",
    "ChainLayer",
    "StackedChain",
    "cached_chain_layers",
    "chain_layers",
    "cross_entropy_and_grad",
    "fold_batchnorms",
]


@dataclass(frozen=True)
class ChainLayer:
    """One layer of a chain: its kind, its state-dict prefix and the hyper-parameters the kernels need."""

    kind: str  # "flatten" | "linear" | "batchnorm" | "relu" | "dropout"
    prefix: str
    bias: bool = False
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    running: bool = True
    p: float = 0.0


def chain_layers(model: nn.Module) -> list[ChainLayer] | None:
    """The layers of ``model`` when its forward is a plain chain of supported layers, else None.

    The forward is traced with ``torch.fx``: every node must call a leaf module on the previous node's
    output. Supported: a leading ``Flatten`` (start_dim=1), ``Linear``, ``BatchNorm1d`` after a ``Linear``,
    ``ReLU``, ``Dropout``, ``Identity``; every parameter must be float32, and no module may carry a forward or
    backward hook (the chain's passes would skip it).
    """
    if any(p.dtype != torch.float32 for p in model.parameters()) or has_hooks(model, parameters=False):
        return None
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # any model fx cannot trace is simply not a chain
        return None
    modules = dict(model.named_modules())
    layers: list[ChainLayer] = []
    previous = None
    seen_linear = False
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                return None
            previous = node
            continue
        if node.op == "output":
            if node.args != (previous,):
                return None
            break
        if node.op != "call_module" or node.args != (previous,) or node.kwargs:
            return None
        module = modules[str(node.target)]
        prefix = f"{node.target}."
        layer: ChainLayer | None
        if isinstance(module, nn.Identity):
            layer = None
        elif isinstance(module, nn.Flatten):
            if seen_linear or module.start_dim != 1 or module.end_dim != -1:
                return None
            layer = ChainLayer("flatten", prefix)
        elif isinstance(module, nn.Linear):
            seen_linear = True
            layer = ChainLayer("linear", prefix, bias=module.bias is not None)
        elif isinstance(module, nn.BatchNorm1d):
            if not layers or layers[-1].kind != "linear":
                return None
            layer = ChainLayer(
                "batchnorm",
                prefix,
                eps=float(module.eps),
                momentum=None if module.momentum is None else float(module.momentum),
                affine=bool(module.affine),
                running=bool(module.track_running_stats),
            )
        elif type(module) is nn.ReLU and seen_linear:
            layer = ChainLayer("relu", prefix)
        elif type(module) is nn.Dropout and seen_linear:
            layer = ChainLayer("dropout", prefix, p=float(module.p))
        else:
            return None
        if layer is not None:
            layers.append(layer)
        previous = node
    if not seen_linear:
        return None
    return layers


#: chain_layers traces the model with torch.fx (milliseconds): once per model and set of submodules, not once
#: per batch. The submodules' identities are part of the key, so replacing one traces again.
_LAYERS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], list[ChainLayer] | None]] = (
    weakref.WeakKeyDictionary()
)


def cached_chain_layers(model: nn.Module) -> list[ChainLayer] | None:
    """:func:`chain_layers` of ``model``, traced once per model and set of submodules."""
    modules = tuple(id(m) for m in model.modules())
    cached = _LAYERS.get(model)
    if cached is None or cached[0] != modules:
        cached = (modules, chain_layers(model))
        _LAYERS[model] = cached
    return cached[1]


def fold_batchnorms(
    layers: list[ChainLayer], params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
) -> tuple[list[ChainLayer], dict[str, torch.Tensor]] | None:
    """The eval-mode chain with every BatchNorm folded into the Linear before it, or None if one cannot be.

    In eval mode a BatchNorm with running statistics is the affine map ``h * s + (beta - mean * s)`` with
    ``s = gamma / sqrt(var + eps)``, so ``BN(W x + b) = (s W) x + (s b + beta - mean s)``: one product per layer
    and no pass over the activations (which, for many rows, is memory-bound and costs as much as the product).
    A BatchNorm without running statistics normalises with the batch's own and cannot be folded. Dropout is the
    identity in eval mode. ``params`` / ``buffers`` are state-dict tensors of one model or stacked ``(K, ...)``.

    Returns:
        The remaining layers (Linear, now all with a bias, ReLU, Flatten) and the Linear layers' parameters.
    """
    out: list[ChainLayer] = []
    folded: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.kind == "dropout":
            continue
        if layer.kind != "batchnorm":
            out.append(layer)
            if layer.kind == "linear":
                folded[layer.prefix + "weight"] = params[layer.prefix + "weight"]
                if layer.bias:
                    folded[layer.prefix + "bias"] = params[layer.prefix + "bias"]
            continue
        if not layer.running:
            return None
        linear = out[-1]  # chain_layers only accepts a BatchNorm right after a Linear
        scale = torch.rsqrt(buffers[layer.prefix + "running_var"] + layer.eps)
        shift = -buffers[layer.prefix + "running_mean"] * scale
        if layer.affine:
            scale = scale * params[layer.prefix + "weight"]
            shift = shift * params[layer.prefix + "weight"] + params[layer.prefix + "bias"]
        bias = folded.get(linear.prefix + "bias")
        folded[linear.prefix + "weight"] = folded[linear.prefix + "weight"] * scale.unsqueeze(-1)
        folded[linear.prefix + "bias"] = shift if bias is None else torch.addcmul(shift, bias, scale)
        out[-1] = ChainLayer("linear", linear.prefix, bias=True)
    return out, folded


def _batch_var_mean(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Biased variance and mean over the batch axis of ``(K, B, F)``, two-pass (as stable as torch's).

    ``torch.var_mean`` over a middle axis is an order of magnitude slower on CPU than these reductions.
    """
    mean = h.mean(1, keepdim=True)
    centered = h - mean
    return (centered * centered).mean(1, keepdim=True), mean


@dataclass
class ChainCache:
    """What :meth:`StackedChain.backward` needs from a training forward pass."""

    params: dict[str, torch.Tensor]
    saved: list[tuple[torch.Tensor, ...]]
    batch: int


def cross_entropy_and_grad(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model mean cross-entropy of ``logits`` ``(k, B, C)`` against ``y`` ``(k, B)``, and its gradient."""
    log_probs = torch.log_softmax(logits, dim=-1)
    losses = -log_probs.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
    # d(mean CE)/d logits = (softmax - onehot) / B, per model.
    g = log_probs.exp_()
    g.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(y, -1, dtype=g.dtype).unsqueeze(-1))
    return losses, g.div_(logits.shape[1])


class StackedChain:
    """Forward, backward and evaluation of K stacked chain models.

    Args:
        layers: What :func:`chain_layers` returned for the architecture.
        params: Stacked parameters ``{state-dict name: (K, ...)}`` (plain tensors; gradients are returned,
            not accumulated).
        buffers: Stacked BatchNorm buffers, updated in place during training.
    """

    def __init__(self, layers: list[ChainLayer], params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]):
        self.layers = layers
        self.params = params
        self.buffers = buffers

    # ---- training
    def loss_and_grads(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        members: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-model mean cross-entropy of one training step and its gradients.

        Args:
            x: ``(k, B, ...)`` each selected model's mini-batch (all of the same size B).
            y: ``(k, B)`` labels.
            members: Indices of the k models (None: all K, in order). BatchNorm running statistics of
                these models are updated.

        Returns:
            ``(losses (k,), grads)``: ``grads[name]`` has the shape of ``params[name][members]``.
        """
        logits, cache = self.forward_train(x, members)
        losses, dlogits = cross_entropy_and_grad(logits, y)
        grads, _ = self.backward(cache, dlogits)
        return losses, grads

    def forward_train(self, x: torch.Tensor, members: torch.Tensor | None = None) -> tuple[torch.Tensor, ChainCache]:
        """Training-mode logits ``(k, B, C)`` of the selected models on their own rows ``x`` ``(k, B, ...)``.

        BatchNorm uses batch statistics and updates the selected models' running statistics. The returned
        cache is what :meth:`backward` needs.
        """
        p = self.params if members is None else {n: v.index_select(0, members) for n, v in self.params.items()}
        k, batch = x.shape[0], x.shape[1]
        h = x.reshape(k, batch, -1)
        saved: list[tuple[torch.Tensor, ...]] = []
        for layer in self.layers:
            if layer.kind == "linear":
                weight = p[layer.prefix + "weight"]
                saved.append((h,))
                if layer.bias:
                    h = torch.baddbmm(p[layer.prefix + "bias"].unsqueeze(1), h, weight.transpose(1, 2))
                else:
                    h = torch.bmm(h, weight.transpose(1, 2))
            elif layer.kind == "batchnorm":
                var, mean = _batch_var_mean(h)
                rstd = torch.rsqrt(var + layer.eps)
                scale = rstd * p[layer.prefix + "weight"].unsqueeze(1) if layer.affine else rstd
                shift = -mean * scale
                if layer.affine:
                    shift = shift + p[layer.prefix + "bias"].unsqueeze(1)
                saved.append((h, mean, rstd))
                if layer.running:
                    self._update_running(layer, mean, var, batch, members)
                h = torch.addcmul(shift, h, scale)
            elif layer.kind == "relu":
                h = torch.relu_(h)  # its input is never saved (BatchNorm saves its own input)
                saved.append((h,))
            elif layer.kind == "dropout":
                if layer.p >= 1:
                    mask = torch.zeros_like(h)
                else:
                    mask = torch.empty_like(h).bernoulli_(1 - layer.p).div_(1 - layer.p)
                h = h * mask
                saved.append((mask,))
            else:  # flatten: done by the reshape above
                saved.append(())
        return h, ChainCache(p, saved, batch)

    def backward(
        self, cache: ChainCache, dlogits: torch.Tensor, *, input_grad: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Gradients of the parameters (and, with ``input_grad``, of the input) given ``dL/dlogits``.

        Returns:
            ``(grads, dx)``: ``grads[name]`` shaped as the selected models' ``params[name]``; ``dx`` of shape
            ``(k, B, features)`` (None unless ``input_grad``).
        """
        p, saved, batch = cache.params, cache.saved, cache.batch
        g = dlogits
        grads: dict[str, torch.Tensor] = {}
        first_linear = next(i for i, layer in enumerate(self.layers) if layer.kind == "linear")
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer.kind == "linear":
                (inp,) = saved[i]
                weight = p[layer.prefix + "weight"]
                grads[layer.prefix + "weight"] = torch.bmm(g.transpose(1, 2), inp)
                if layer.bias:
                    grads[layer.prefix + "bias"] = g.sum(1)
                if i == first_linear and not input_grad:
                    return grads, None
                g = torch.bmm(g, weight)
            elif layer.kind == "batchnorm":
                inp, mean, rstd = saved[i]
                sum_g = g.sum(1, keepdim=True)
                sum_gx = (g * inp).sum(1, keepdim=True)
                sum_gxhat = (sum_gx - mean * sum_g) * rstd  # dL/dgamma
                if layer.affine:
                    grads[layer.prefix + "weight"] = sum_gxhat.squeeze(1)
                    grads[layer.prefix + "bias"] = sum_g.squeeze(1)
                    a = rstd * p[layer.prefix + "weight"].unsqueeze(1)
                else:
                    a = rstd
                # dx = a * (g - mean(g) - xhat * mean(g * xhat)), with xhat = (x - mean) * rstd
                b = -a * rstd * sum_gxhat / batch
                c = -a * sum_g / batch - b * mean
                g = torch.addcmul(c, g, a).addcmul_(inp, b)
            elif layer.kind == "relu":
                (out,) = saved[i]
                g = torch.ops.aten.threshold_backward(g, out, 0.0)  # ReLU's own backward kernel
            elif layer.kind == "dropout":
                (mask,) = saved[i]
                g = g * mask
        return grads, g

    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-mode logits ``(k, B, C)`` of the selected models, each on its own rows ``x`` ``(k, B, ...)``."""
        p = self.params if members is None else {n: v.index_select(0, members) for n, v in self.params.items()}
        b = self.buffers if members is None else {n: v.index_select(0, members) for n, v in self.buffers.items()}
        return self._eval(p, b, x.reshape(x.shape[0], x.shape[1], -1))

    @torch.no_grad()
    def _update_running(
        self, layer: ChainLayer, mean: torch.Tensor, var: torch.Tensor, batch: int, members: torch.Tensor | None
    ) -> None:
        """``nn.BatchNorm1d``'s running-statistics update for the selected models."""
        rm, rv = self.buffers[layer.prefix + "running_mean"], self.buffers[layer.prefix + "running_var"]
        tracked = self.buffers[layer.prefix + "num_batches_tracked"]
        sel = slice(None) if members is None else members
        count = tracked[sel] + 1
        tracked[sel] = count
        if layer.momentum is None:
            factor = (1.0 / count.to(mean.dtype)).view(-1, 1)
        else:
            factor = torch.full((1, 1), layer.momentum, dtype=mean.dtype, device=mean.device)
        unbiased = var.squeeze(1) * (batch / max(batch - 1, 1))
        rm[sel] = rm[sel] * (1 - factor) + mean.squeeze(1) * factor
        rv[sel] = rv[sel] * (1 - factor) + unbiased * factor

    # ---- evaluation
    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor, *, max_elements: int = 1 << 22) -> torch.Tensor:
        """Eval-mode logits of all K models on the same rows ``x`` (``(n, ...)``): ``(K, n, n_classes)``.

        The first Linear runs as one ``(n, in) @ (in, K * out)`` product and BatchNorms with running
        statistics are folded into the Linear before them; rows are processed in chunks that keep an activation
        under ``max_elements`` floats (16 MiB by default: small enough to stay in cache between layers, which
        takes a third off a 16-model population's scoring of 12,000 rows compared with 128 MiB chunks).
        """
        first = next(layer for layer in self.layers if layer.kind == "linear")
        weight0 = self.params[first.prefix + "weight"]
        K, width = weight0.shape[0], max(v.shape[1] for n, v in self.params.items() if n.endswith("weight"))
        chunk = max(64, max_elements // max(K * width, 1))
        rows = x.reshape(len(x), -1)
        folded = self._folded()
        if folded is None:
            return torch.cat([self._eval_chunk(rows[i : i + chunk]) for i in range(0, len(rows), chunk)], dim=1)
        layers, params = folded
        return torch.cat(
            [self._eval(params, {}, rows[i : i + chunk], layers) for i in range(0, len(rows), chunk)], dim=1
        )

    def _eval_chunk(self, rows: torch.Tensor) -> torch.Tensor:
        return self._eval(self.params, self.buffers, rows)

    def _folded(self) -> tuple[list[ChainLayer], dict[str, torch.Tensor]] | None:
        """The eval-mode chain with every BatchNorm folded into the Linear before it (:func:`fold_batchnorms`)."""
        return fold_batchnorms(self.layers, self.params, self.buffers)

    def _eval(
        self,
        p: dict[str, torch.Tensor],
        b: dict[str, torch.Tensor],
        rows: torch.Tensor,
        layers: list[ChainLayer] | None = None,
    ) -> torch.Tensor:
        """Eval-mode forward; ``rows`` is ``(n, features)`` shared by all models or ``(K, n, features)``.

        ``layers`` (default the chain's own) may be the folded ones of :meth:`_folded`, with ``p`` their params.
        """
        h: torch.Tensor | None = None
        K = next(iter(p.values())).shape[0]
        for layer in self.layers if layers is None else layers:
            if layer.kind == "linear":
                weight = p[layer.prefix + "weight"]
                bias = p[layer.prefix + "bias"] if layer.bias else None
                if h is None and rows.dim() == 2:
                    out = weight.shape[1]
                    flat = F.linear(rows, weight.reshape(K * out, -1), None if bias is None else bias.reshape(-1))
                    h = flat.view(len(rows), K, out).transpose(0, 1)
                    continue
                inp = rows if h is None else h
                if bias is not None:
                    h = torch.baddbmm(bias.unsqueeze(1), inp, weight.transpose(1, 2))
                else:
                    h = torch.bmm(inp, weight.transpose(1, 2))
            elif layer.kind == "batchnorm":
                assert h is not None
                if layer.running:
                    mean = b[layer.prefix + "running_mean"].unsqueeze(1)
                    var = b[layer.prefix + "running_var"].unsqueeze(1)
                else:
                    var, mean = _batch_var_mean(h)
                scale = torch.rsqrt(var + layer.eps)
                if layer.affine:
                    scale = scale * p[layer.prefix + "weight"].unsqueeze(1)
                shift = -mean * scale
                if layer.affine:
                    shift = shift + p[layer.prefix + "bias"].unsqueeze(1)
                h = torch.addcmul(shift, h, scale)
            elif layer.kind == "relu":
                assert h is not None
                h = torch.relu_(h)
        assert h is not None
        return h
