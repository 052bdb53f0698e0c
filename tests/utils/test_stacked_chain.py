"""The hand-written stacked MLP kernels: same models as the vmap kernel and as one-at-a-time training."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.progress import resolve_progress
from amulet.utils import TensorData, TrainConfig, derive_seed, predict_logits, seeded_init, train_model
from amulet.utils._population import population_logits, stack_module_state
from amulet.utils._stacked_chain import StackedChain, chain_layers
from amulet.utils._stacked_training import stacked_kernel, train_stacked_models


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(x + torch.relu(self.a(x)))


def _data(seed: int, n: int = 400) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.3 * torch.randn(n, generator=g) > 0).long()
    return TensorData(x, y)


def _gap(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def test_chain_detection() -> None:
    layers = chain_layers(LinearNet(6, 2, hidden_layer_sizes=[8, 4]))
    assert layers is not None
    kinds = ["flatten", "linear", "batchnorm", "relu", "linear", "batchnorm", "relu", "linear"]
    assert [layer.kind for layer in layers] == kinds
    assert chain_layers(nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))) is None  # Tanh: not a chain kernel
    assert chain_layers(_Residual()) is None  # a skip connection is not a chain
    assert stacked_kernel(LinearNet(6, 2)) == "chain"
    assert stacked_kernel(LinearNet(6, 2), transform=lambda f, x, y, g: (x, y)) == "vmap"


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_chain_kernel_equals_vmap_kernel_and_one_at_a_time(
    batch_norm: bool, optimizer: Literal["adam", "sgd"], seed: int
) -> None:
    # Unequal subsets: models run out of batches at different steps, one ends on a batch of one (skipped
    # with BatchNorm), so the per-model groups, running statistics and Adam step counts are exercised.
    data = _data(seed)
    g = torch.Generator().manual_seed(seed)
    sizes = [120, 97, 161, 33]
    subsets = [torch.randperm(len(data), generator=g)[:n] for n in sizes]
    seeds = [derive_seed(seed, "chain", k) for k in range(len(sizes))]
    config = TrainConfig(epochs=3, batch_size=32, optimizer=optimizer, weight_decay=1e-3)

    def factory() -> nn.Module:
        return LinearNet(6, 2, hidden_layer_sizes=[16, 8], batch_norm=batch_norm)

    out = {}
    for kernel in ("chain", "vmap"):
        fresh = [seeded_init(factory, s) for s in seeds]
        out[kernel] = train_stacked_models(
            fresh, data, subsets, seeds, config, torch.device("cpu"), resolve_progress(None), kernel=kernel
        )
    for k, (a, b) in enumerate(zip(out["chain"], out["vmap"])):
        single = train_model(seeded_init(factory, seeds[k]), data.subset(subsets[k]), config=config, seed=seeds[k])
        assert _gap(a, b) < 1e-4
        assert _gap(a, single) < 1e-4
        assert not a.training
    assert _gap(out["chain"][0], out["chain"][1]) > 1e-2  # each model its own rows and seed


def test_stacked_evaluation_equals_each_model(seed: int) -> None:
    data = _data(seed, 300)

    def factory() -> nn.Module:
        return LinearNet(6, 3, hidden_layer_sizes=[16, 8])

    models = [seeded_init(factory, derive_seed(seed, "m", k)) for k in range(5)]
    for m in models:  # non-trivial running statistics
        m.train()
        m(data.x[:64] * 2 + 1)
        m.eval()
    stacked = population_logits(models, data.x)
    single = torch.stack([predict_logits(m, data.x) for m in models])
    torch.testing.assert_close(stacked, single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)),
        lambda: nn.Sequential(
            nn.Linear(6, 8), nn.BatchNorm1d(8, affine=False), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3)
        ),
        # no running statistics: eval mode normalises with the batch's own, so nothing can be folded
        lambda: nn.Sequential(
            nn.Linear(6, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 3)
        ),
    ],
    ids=["no-bias", "no-affine-dropout", "batch-statistics"],
)
def test_stacked_evaluation_in_chunks_equals_each_model(seed: int, factory: Any) -> None:
    """Eval-mode scoring (BatchNorms folded into the Linear before them) in several chunks = each model's."""
    data = _data(seed, 300)
    models = [seeded_init(factory, derive_seed(seed, "c", k)) for k in range(4)]
    for m in models:
        m.train()
        m(data.x[:64] * 2 + 1)
        with torch.no_grad():  # a non-trivial affine part where there is one
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        m.eval()
    layers = chain_layers(models[0])
    assert layers is not None
    params, buffers = stack_module_state(models)
    chain = StackedChain(layers, {k: v.detach() for k, v in params.items()}, buffers)
    # 64-row chunks of the 300 rows (the smallest chunk eval_logits takes)
    stacked = chain.eval_logits(data.x, max_elements=1)
    if factory().__getitem__(1).track_running_stats:
        single = torch.stack([predict_logits(m, data.x) for m in models])
    else:  # each model normalises every 64-row chunk with that chunk's statistics
        single = torch.stack([torch.cat([m(data.x[i : i + 64]) for i in range(0, 300, 64)]) for m in models])
    torch.testing.assert_close(stacked, single.detach(), rtol=1e-5, atol=1e-5)


def test_chain_dropout_trains_each_model_with_its_own_masks(seed: int) -> None:
    data = _data(seed)
    seeds = [1, 2]

    def factory() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 2))

    assert stacked_kernel(factory()) == "chain"
    torch.manual_seed(seed)
    models = train_stacked_models(
        [seeded_init(factory, s) for s in seeds],
        data,
        [torch.arange(len(data))] * 2,
        seeds,
        TrainConfig(epochs=5, batch_size=32, lr=1e-2),
        torch.device("cpu"),
        resolve_progress(None),
    )
    acc = [(predict_logits(m, data.x).argmax(-1) == data.y).double().mean() for m in models]
    assert min(acc) > 0.85
